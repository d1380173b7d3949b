package hostcopy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/podbridge/podbridge/internal/caps"
	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/translate"
)

var cfg = translate.Config{VCluster: "vc", HostNamespace: "host", HostServiceAccount: "default"}

// original is a stored virtual ConfigMap, with metadata the tenant chose.
func original(name, rv, data string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team", ResourceVersion: rv,
			// The tenant's keys, podbridge's among them: none reaches the copy.
			Labels:      map[string]string{"app": "web", translate.LabelVCluster: "other", translate.LabelManagedBy: "someone"},
			Annotations: map[string]string{translate.AnnotationSourceResourceVersion: "999", "note": "x"}},
		Data: map[string]string{"k": data},
	}
}

func hostName(name string) string { return translate.HostName(name, "team", "vc") }

// onHost is a copy already on the host, made from original name at rv.
func onHost(name, rv, data string, change func(*corev1.ConfigMap)) *corev1.ConfigMap {
	c := translate.HostConfigMap(original(name, rv, data), cfg)
	c.Labels["host.example.com/kept"] = "yes" // a label of the host's, not podbridge's
	if change != nil {
		change(c)
	}
	return c
}

// recorder is a fake host that records every write call as
// "create|update <name> by <field manager>", whatever its outcome.
type recorder struct {
	client.WithWatch
	calls []string
	fail  error // returned by every write when set
}

func newHost(t *testing.T, objs ...client.Object) *recorder {
	t.Helper()
	r := &recorder{}
	r.WithWatch = fake.NewClientBuilder().WithScheme(kube.Scheme).WithObjects(objs...).WithInterceptorFuncs(interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			o := &client.CreateOptions{}
			o.ApplyOptions(opts)
			r.calls = append(r.calls, fmt.Sprintf("create %s by %s", obj.GetName(), o.FieldManager))
			if r.fail != nil {
				return r.fail
			}
			return c.Create(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			o := &client.UpdateOptions{}
			o.ApplyOptions(opts)
			r.calls = append(r.calls, fmt.Sprintf("update %s by %s", obj.GetName(), o.FieldManager))
			if r.fail != nil {
				return r.fail
			}
			return c.Update(ctx, obj, opts...)
		},
	}).Build()
	return r
}

func stored(t *testing.T, c client.Client, name string) *corev1.ConfigMap {
	t.Helper()
	got := &corev1.ConfigMap{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "host", Name: hostName(name)}, got); err != nil {
		t.Fatalf("host copy %s: %v", name, err)
	}
	return got
}

func TestWrite(t *testing.T) {
	const webhook, reflector = translate.FieldManagerWebhook, translate.FieldManagerReflector
	tests := []struct {
		name         string
		onHost       []client.Object
		fieldManager string
		// current names the host copy (read from the fake) to pass as
		// Copy.Current; "" passes nil.
		current string
		// staleCurrent passes current at an older resourceVersion.
		staleCurrent bool
		copy         *corev1.ConfigMap
		wantCalls    []string
		wantResult   Result
		wantErr      func(error) bool
		// wantData is the host copy's data afterwards ("" when none).
		wantData, wantSource string
		wantKept             bool // the host's own label is still there
	}{
		{
			name: "absent: created from the stored original", fieldManager: webhook,
			copy:      original("cfg", "5", "new"),
			wantCalls: []string{"create " + hostName("cfg") + " by " + webhook}, wantResult: Created,
			wantData: "new", wantSource: "5",
		},
		{
			name: "present and current: nothing written after the create finds it", fieldManager: webhook,
			onHost: []client.Object{onHost("cfg", "5", "new", nil)}, copy: original("cfg", "5", "new"),
			wantCalls: []string{"create " + hostName("cfg") + " by " + webhook}, wantResult: Unchanged,
			wantData: "new", wantSource: "5", wantKept: true,
		},
		{
			name: "present and stale: updated in place, the host's labels kept", fieldManager: webhook,
			onHost: []client.Object{onHost("cfg", "4", "old", nil)}, copy: original("cfg", "5", "new"),
			wantCalls: []string{"create " + hostName("cfg") + " by " + webhook, "update " + hostName("cfg") + " by " + webhook}, wantResult: Updated,
			wantData: "new", wantSource: "5", wantKept: true,
		},
		{
			name: "seen by the caller: updated without a create", fieldManager: reflector,
			onHost: []client.Object{onHost("cfg", "4", "old", nil)}, current: "cfg", copy: original("cfg", "5", "new"),
			wantCalls: []string{"update " + hostName("cfg") + " by " + reflector}, wantResult: Updated,
			wantData: "new", wantSource: "5", wantKept: true,
		},
		{
			name: "another virtual cluster's object of the name: Conflict, left alone", fieldManager: webhook,
			onHost:    []client.Object{onHost("cfg", "4", "theirs", func(c *corev1.ConfigMap) { c.Labels[translate.LabelVCluster] = "other" })},
			copy:      original("cfg", "5", "new"),
			wantCalls: []string{"create " + hostName("cfg") + " by " + webhook}, wantErr: apierrors.IsConflict,
			wantData: "theirs", wantSource: "4", wantKept: true,
		},
		{
			name: "an object podbridge does not manage, seen by the caller: Conflict, left alone", fieldManager: reflector,
			onHost:  []client.Object{onHost("cfg", "4", "theirs", func(c *corev1.ConfigMap) { delete(c.Labels, translate.LabelManagedBy) })},
			current: "cfg", copy: original("cfg", "5", "new"),
			wantErr:  apierrors.IsConflict,
			wantData: "theirs", wantSource: "4", wantKept: true,
		},
		{
			name: "a stale view of the copy: the host's Conflict comes back", fieldManager: reflector,
			onHost: []client.Object{onHost("cfg", "4", "old", nil)}, current: "cfg", staleCurrent: true, copy: original("cfg", "5", "new"),
			wantCalls: []string{"update " + hostName("cfg") + " by " + reflector}, wantErr: apierrors.IsConflict,
			wantData: "old", wantSource: "4", wantKept: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			host := newHost(t, tt.onHost...)
			var current client.Object
			if tt.current != "" {
				current = stored(t, host, tt.current)
				if tt.staleCurrent {
					current.SetResourceVersion("1")
				}
			}
			before := tt.copy.DeepCopy()
			w := &Writer{Host: host, FieldManager: tt.fieldManager, Config: cfg}
			results, err := w.Write(ctx, Copy{Original: tt.copy, Current: current})
			switch {
			case tt.wantErr != nil && !tt.wantErr(err):
				t.Fatalf("error %v, want another", err)
			case tt.wantErr == nil && err != nil:
				t.Fatal(err)
			case tt.wantErr == nil && (len(results) != 1 || results[0] != tt.wantResult):
				t.Errorf("results %v, want [%v]", results, tt.wantResult)
			}
			if !slices.Equal(host.calls, tt.wantCalls) {
				t.Errorf("writes %q, want %q", host.calls, tt.wantCalls)
			}
			got := stored(t, host, "cfg")
			if got.Data["k"] != tt.wantData || got.Annotations[translate.AnnotationSourceResourceVersion] != tt.wantSource {
				t.Errorf("host copy holds %q from version %q, want %q from %q", got.Data["k"], got.Annotations[translate.AnnotationSourceResourceVersion], tt.wantData, tt.wantSource)
			}
			if kept := got.Labels["host.example.com/kept"] == "yes"; kept != tt.wantKept {
				t.Errorf("host's own label kept: %t, want %t", kept, tt.wantKept)
			}
			if tt.wantErr == nil {
				// What is written is podbridge's translation of the stored
				// original: none of the tenant's keys, podbridge's own labels.
				want := translate.HostConfigMap(tt.copy, cfg)
				for k, v := range want.Labels {
					if got.Labels[k] != v {
						t.Errorf("label %s=%q, want %q", k, got.Labels[k], v)
					}
				}
				if got.Labels["app"] != "" || got.Annotations["note"] != "" {
					t.Errorf("the tenant's keys reached the host copy: labels %v annotations %v", got.Labels, got.Annotations)
				}
			}
			if !maps.Equal(tt.copy.Data, before.Data) || !maps.Equal(tt.copy.Labels, before.Labels) {
				t.Errorf("the original changed: %v, was %v", tt.copy, before)
			}
		})
	}
}

// Copies are admitted against the caps all together or not at all, and
// nothing is written for a refused one; a failed write gives its room back.
func TestWriteWithinCaps(t *testing.T) {
	ctx := context.Background()
	host := newHost(t, onHost("a", "1", "x", nil))
	w := &Writer{Host: host, FieldManager: translate.FieldManagerWebhook, Config: cfg,
		Budget: &caps.Budget{Reader: host, Namespace: "host", VCluster: "vc", Limits: caps.Limits{MaxCopies: 2}}}

	var limit *caps.LimitError
	_, err := w.Write(ctx, Copy{Original: original("b", "1", "x")}, Copy{Original: original("c", "1", "x")})
	if !errors.As(err, &limit) || limit.Flag != caps.FlagMaxCopies {
		t.Fatalf("two new copies with one of 2 in use: %v, want a --max-copies refusal", err)
	}
	if len(host.calls) != 0 {
		t.Fatalf("writes for refused copies: %q", host.calls)
	}

	host.fail = apierrors.NewServiceUnavailable("host down")
	if _, err := w.Write(ctx, Copy{Original: original("b", "1", "x")}); !apierrors.IsServiceUnavailable(err) {
		t.Fatalf("write while the host fails: %v", err)
	}
	host.fail, host.calls = nil, nil
	// b's room was given back: c fits.
	if results, err := w.Write(ctx, Copy{Original: original("c", "1", "x")}); err != nil || results[0] != Created {
		t.Fatalf("a copy after a failed write: %v %v", results, err)
	}
	if want := []string{"create " + hostName("c") + " by " + translate.FieldManagerWebhook}; !slices.Equal(host.calls, want) {
		t.Errorf("writes %q, want %q", host.calls, want)
	}
}

// A Secret's copy keeps its type; anything else is not copied.
func TestWriteSecretAndOthers(t *testing.T) {
	ctx := context.Background()
	host := newHost(t)
	w := &Writer{Host: host, FieldManager: translate.FieldManagerReflector, Config: cfg}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "team", ResourceVersion: "3"},
		Type: corev1.SecretTypeBasicAuth, Data: map[string][]byte{"username": []byte("u"), "password": []byte("p")}}
	if _, err := w.Write(ctx, Copy{Original: secret}); err != nil {
		t.Fatal(err)
	}
	got := &corev1.Secret{}
	if err := host.Get(ctx, client.ObjectKey{Namespace: "host", Name: hostName("db")}, got); err != nil {
		t.Fatal(err)
	}
	if got.Type != corev1.SecretTypeBasicAuth || string(got.Data["password"]) != "p" || got.Annotations[translate.AnnotationSourceResourceVersion] != "3" {
		t.Errorf("host Secret: type %s data %v annotations %v", got.Type, got.Data, got.Annotations)
	}
	if _, err := w.Write(ctx, Copy{Original: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "team"}}}); err == nil {
		t.Error("a Pod was copied")
	}
	if len(host.calls) != 1 {
		t.Errorf("writes %q, want the Secret's create only", host.calls)
	}
}
