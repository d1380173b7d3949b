package ownership

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		want        []string // substrings of the error; none: accepted
	}{
		{"marked as this virtual cluster's", map[string]string{Annotation: "a"}, nil},
		{"no annotations", nil, []string{"Secret ns/s", "carries no podbridge.io/owner", `"a"`, "kubectl annotate -n ns secret/s podbridge.io/owner=a"}},
		{"only podbridge's managed-by label's kind of mark", map[string]string{"app.kubernetes.io/managed-by": "podbridge"}, []string{"carries no podbridge.io/owner"}},
		{"another virtual cluster's", map[string]string{Annotation: "b"}, []string{"Secret ns/s", `belongs to virtual cluster "b"`, `not "a"`}},
		{"empty owner", map[string]string{Annotation: ""}, []string{`belongs to virtual cluster ""`}},
		{"a prefix of the name is not the name", map[string]string{Annotation: "a-2"}, []string{`belongs to virtual cluster "a-2"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s", Annotations: tc.annotations}}
			err := Check(s, "Secret", "a")
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestMarkIsWhatCheckAccepts(t *testing.T) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s", Annotations: map[string]string{"keep": "me"}}}
	Mark(&s.ObjectMeta, "a")
	if err := Check(s, "Secret", "a"); err != nil {
		t.Fatal(err)
	}
	if s.Annotations["keep"] != "me" {
		t.Errorf("Mark dropped another annotation: %v", s.Annotations)
	}
	if err := Check(s, "Secret", "b"); err == nil {
		t.Error("a Secret marked for a is accepted for b")
	}
}
