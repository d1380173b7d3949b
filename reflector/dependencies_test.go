package reflector

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/translate"
)

func TestDecideCopy(t *testing.T) {
	hostCopy := func(age time.Duration, from string) client.Object {
		return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "copy", CreationTimestamp: metav1.NewTime(testNow.Add(-age)),
			Annotations: map[string]string{translate.AnnotationSourceResourceVersion: from}}}
	}
	tests := []struct {
		name      string
		hostCopy  client.Object
		used      bool
		cachedRV  string
		want      copyStep
		wantAfter time.Duration
	}{
		{name: "unused, no copy", want: copyNone},
		{name: "unused copy, young: the webhook copies before the pod is stored", hostCopy: hostCopy(5*time.Second, "1"), want: copyNone, wantAfter: 26 * time.Second},
		{name: "unused copy past the grace period goes", hostCopy: hostCopy(time.Minute, "1"), want: copyDeleteUnused},
		{name: "used copy, current by the cache", hostCopy: hostCopy(time.Minute, "7"), used: true, cachedRV: "7", want: copyNone},
		{name: "used copy, original moved on", hostCopy: hostCopy(time.Minute, "7"), used: true, cachedRV: "8", want: copyReadOriginal},
		{name: "used copy, original not cached", hostCopy: hostCopy(time.Minute, "7"), used: true, want: copyReadOriginal},
		{name: "used, no copy", used: true, cachedRV: "8", want: copyReadOriginal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, after := decideCopy(tt.hostCopy, tt.used, tt.cachedRV, testNow, testGrace)
			if got != tt.want || after != tt.wantAfter {
				t.Errorf("decideCopy = %v, %s; want %v, %s", got, after, tt.want, tt.wantAfter)
			}
		})
	}
}

func TestDecideCopyFromOriginal(t *testing.T) {
	original := func(rv string) client.Object {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm", ResourceVersion: rv}}
	}
	hostCopy := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "copy",
		Annotations: map[string]string{translate.AnnotationSourceResourceVersion: "7"}}}
	tests := []struct {
		name     string
		hostCopy client.Object
		live     client.Object
		want     copyStep
	}{
		{name: "original and copy gone", want: copyNone},
		{name: "original deleted: its copy goes", hostCopy: hostCopy, want: copyDeleteOriginalGone},
		{name: "original appeared after the pod: copied", live: original("1"), want: copyCreate},
		{name: "copy current: the cache lagged", hostCopy: hostCopy, live: original("7"), want: copyNone},
		{name: "original changed: the copy follows", hostCopy: hostCopy, live: original("8"), want: copyUpdate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := decideCopyFromOriginal(tt.hostCopy, tt.live); got != tt.want {
				t.Errorf("decideCopyFromOriginal = %v, want %v", got, tt.want)
			}
		})
	}
}
