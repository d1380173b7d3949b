package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/check"
	"github.com/podbridge/podbridge/internal/caps"
	"github.com/podbridge/podbridge/policy"
	"github.com/podbridge/podbridge/reflector"
	"github.com/podbridge/podbridge/testbed/controlplane"
	"github.com/podbridge/podbridge/translate"
	"github.com/podbridge/podbridge/webhook"
)

// These tests prove host objects and their selectors, by the host
// apiserver's own label selection of host pods. No dataplane here enforces
// NetworkPolicies (kwok runs no containers; the real node's bridge CNI
// enforces none): what traffic the host policies let through is not tested.

// allowFrom is a tenant NetworkPolicy that selects app=db pods of its
// namespace and admits ingress on 5432 from peers.
func allowFrom(namespace, name string, peers ...networkingv1.NetworkPolicyPeer) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  peers,
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(5432))}},
			}},
		},
	}
}

// webPods selects the pods labelled app=web.
func webPods() *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
}

func hostPolicyKey(tc translate.Config, virtual *networkingv1.NetworkPolicy) client.ObjectKey {
	return client.ObjectKey{Namespace: tc.HostNamespace, Name: translate.HostNetworkPolicyName(virtual.Name, virtual.Namespace, tc.VCluster)}
}

func getHostPolicy(t *testing.T, tc translate.Config, virtual *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicy {
	t.Helper()
	host := &networkingv1.NetworkPolicy{}
	if err := hostClient.Get(context.Background(), hostPolicyKey(tc, virtual), host); err != nil {
		t.Fatalf("host NetworkPolicy of %s/%s: %v", virtual.Namespace, virtual.Name, err)
	}
	return host
}

// selectedBy lists, sorted, the host namespace's pods selector selects,
// by the host apiserver's own label selection.
func selectedBy(t *testing.T, selector *metav1.LabelSelector) []string {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		t.Fatalf("host selector %v: %v", selector, err)
	}
	pods := &corev1.PodList{}
	if err := hostClient.List(context.Background(), pods, client.InNamespace(env.Options.Translate.HostNamespace), client.MatchingLabelsSelector{Selector: s}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range pods.Items {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	return names
}

// peersSelect lists, sorted, the host pods the peers of a host rule select;
// every peer must be a pod selector in the host namespace or an ipBlock.
func peersSelect(t *testing.T, peers []networkingv1.NetworkPolicyPeer) []string {
	t.Helper()
	var names []string
	for _, p := range peers {
		switch {
		case p.NamespaceSelector != nil:
			t.Errorf("host peer %+v reaches other namespaces", p)
		case p.PodSelector != nil:
			names = append(names, selectedBy(t, p.PodSelector)...)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

func labelled(p *corev1.Pod, app string) *corev1.Pod {
	p.Labels = map[string]string{"app": app}
	return p
}

// A NetworkPolicy create makes its host NetworkPolicy inside the request;
// it selects the tenant's host pods of that namespace only, its peers
// likewise; an update is on the host when it returns; deletion goes both
// ways and an orphan is collected.
func TestNetworkPolicyCreateUpdateDelete(t *testing.T) {
	ctx := context.Background()
	tc := env.Options.Translate
	ns := namespace(t)
	db, web, other := labelled(simplePod(ns, "db"), "db"), labelled(simplePod(ns, "web"), "web"), labelled(simplePod(namespace(t), "web"), "web")
	for _, p := range []*corev1.Pod{db, web, other} {
		if err := virtualClient.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	np := allowFrom(ns, "db-from-web", networkingv1.NetworkPolicyPeer{PodSelector: webPods()})
	np.Labels = map[string]string{"tier": "data"}
	np.Annotations = map[string]string{"projectcalico.org/metadata": "x"}
	if err := virtualClient.Create(ctx, np); err != nil {
		t.Fatalf("create: %v", err)
	}
	host := getHostPolicy(t, tc, np)
	if np.Annotations[translate.AnnotationSyncID] == "" || np.Annotations[translate.AnnotationSyncID] != host.Annotations[translate.AnnotationSyncID] {
		t.Errorf("sync IDs: virtual %q, host %q", np.Annotations[translate.AnnotationSyncID], host.Annotations[translate.AnnotationSyncID])
	}
	if got, want := selectedBy(t, &host.Spec.PodSelector), []string{hostKey(db).Name}; !slices.Equal(got, want) {
		t.Errorf("host podSelector selects %v, want %v", got, want)
	}
	if got, want := peersSelect(t, host.Spec.Ingress[0].From), []string{hostKey(web).Name}; !slices.Equal(got, want) {
		t.Errorf("host peers select %v, want %v (not %s's web)", got, want, other.Namespace)
	}
	if host.Labels[translate.TenantKey("tier")] != "data" || len(host.Spec.Ingress[0].Ports) != 1 || host.Spec.Ingress[0].Ports[0].Port.IntVal != 5432 {
		t.Errorf("host policy %+v", host)
	}
	for k := range host.Annotations {
		if !translate.IsReserved(k) {
			t.Errorf("tenant annotation %q on the host NetworkPolicy", k)
		}
	}

	// podbridge check finds the pair whole and the isolation policy in
	// place, against the real apiservers.
	violations, err := check.RunNetworkPolicies(ctx, hostClient, virtualClient, check.Options{Config: tc, OrphanGracePeriod: orphanGrace, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range violations {
		if strings.HasPrefix(v.Virtual, ns+"/") || v.Kind == check.NoIsolationPolicy || v.Kind == check.IsolationPolicyDiffers {
			t.Errorf("podbridge check: %v", v)
		}
	}

	// The update is on the host when it returns: a port range, egress.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(np), np); err != nil {
			return err
		}
		np.Spec.Ingress[0].Ports[0].EndPort = ptr.To(int32(5440))
		np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{PodSelector: webPods()}}}}
		return virtualClient.Update(ctx, np)
	})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	host = getHostPolicy(t, tc, np)
	if p := host.Spec.Ingress[0].Ports[0]; p.EndPort == nil || *p.EndPort != 5440 || len(host.Spec.PolicyTypes) != 2 {
		t.Errorf("host policy after the update: %+v", host.Spec)
	}
	if got, want := peersSelect(t, host.Spec.Egress[0].To), []string{hostKey(web).Name}; !slices.Equal(got, want) {
		t.Errorf("host egress peers select %v, want %v", got, want)
	}

	// Deleted in the virtual cluster: the host policy goes.
	if err := virtualClient.Delete(ctx, np); err != nil {
		t.Fatal(err)
	}
	waitGone(t, hostClient, host, 30*time.Second)

	// Deleted on the host: the virtual policy goes.
	gone := allowFrom(ns, "host-deleted", networkingv1.NetworkPolicyPeer{PodSelector: webPods()})
	if err := virtualClient.Create(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if err := hostClient.Delete(ctx, getHostPolicy(t, tc, gone)); err != nil {
		t.Fatal(err)
	}
	waitGone(t, virtualClient, gone, 30*time.Second)

	// A host policy no stored policy claims (its admission failed after
	// podbridge's) is collected.
	planted, errs := translate.HostNetworkPolicy(allowFrom(ns, "never-stored"), tc, "planted", nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if err := hostClient.Create(ctx, planted); err != nil {
		t.Fatal(err)
	}
	waitGone(t, hostClient, planted, 60*time.Second)

	// A dry run writes nothing.
	dry := allowFrom(ns, "dry", networkingv1.NetworkPolicyPeer{PodSelector: webPods()})
	if err := virtualClient.Create(ctx, dry, client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	if err := hostClient.Get(ctx, hostPolicyKey(tc, dry), &networkingv1.NetworkPolicy{}); !apierrors.IsNotFound(err) {
		t.Errorf("host NetworkPolicy of a dry run: %v", err)
	}
}

// A namespaceSelector becomes the virtual namespaces its labels match, and
// follows them: a namespace labelled after the policy was made is selected
// then, one unlabelled is dropped. An empty one selects this tenant's pods
// in every namespace and no other tenant's, nor a pod podbridge did not make.
func TestNetworkPolicyNamespaceSelectorFollowsLabels(t *testing.T) {
	ctx := context.Background()
	tc := env.Options.Translate
	ns, front := namespace(t), namespace(t)
	mine := labelled(simplePod(front, "web"), "web")
	if err := virtualClient.Create(ctx, mine); err != nil {
		t.Fatal(err)
	}
	otherTenant := tc
	otherTenant.VCluster = "netpol-other"
	foreign, _, errs := translate.HostPod(labelled(simplePod(front, "web"), "web"), otherTenant, "foreign")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if err := hostClient.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hostClient.Delete(context.Background(), foreign, client.GracePeriodSeconds(0)) })

	np := allowFrom(ns, "from-front", networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "front"}}})
	if err := virtualClient.Create(ctx, np); err != nil {
		t.Fatal(err)
	}
	if got := peersSelect(t, getHostPolicy(t, tc, np).Spec.Ingress[0].From); len(got) > 0 {
		t.Errorf("no namespace is labelled yet, and the host peers select %v", got)
	}
	setLabel := func(value *string) {
		t.Helper()
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			n := &corev1.Namespace{}
			if err := virtualClient.Get(ctx, client.ObjectKey{Name: front}, n); err != nil {
				return err
			}
			if value == nil {
				delete(n.Labels, "team")
			} else {
				n.Labels["team"] = *value
			}
			return virtualClient.Update(ctx, n)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	setLabel(ptr.To("front"))
	want := []string{hostKey(mine).Name}
	eventually(t, 30*time.Second, "the namespace labelled later selected on the host", func(context.Context) (bool, string) {
		got := peersSelect(t, getHostPolicy(t, tc, np).Spec.Ingress[0].From)
		return slices.Equal(got, want), fmt.Sprint(got)
	})
	setLabel(nil)
	eventually(t, 30*time.Second, "the namespace unlabelled dropped on the host", func(context.Context) (bool, string) {
		got := peersSelect(t, getHostPolicy(t, tc, np).Spec.Ingress[0].From)
		return len(got) == 0, fmt.Sprint(got)
	})

	// Every namespace: this tenant's pods, never the other tenant's.
	all := allowFrom(ns, "from-all", networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: webPods()})
	if err := virtualClient.Create(ctx, all); err != nil {
		t.Fatal(err)
	}
	got := peersSelect(t, getHostPolicy(t, tc, all).Spec.Ingress[0].From)
	if !slices.Contains(got, hostKey(mine).Name) || slices.Contains(got, foreign.Name) {
		t.Errorf("an empty namespaceSelector selects %v: want %s and not the other tenant's %s", got, hostKey(mine).Name, foreign.Name)
	}
	// No peers at all (every source): this tenant's pods only, and with
	// the reserved ranges named, the addresses outside them.
	everyone := allowFrom(ns, "from-everyone")
	if err := virtualClient.Create(ctx, everyone); err != nil {
		t.Fatal(err)
	}
	from := getHostPolicy(t, tc, everyone).Spec.Ingress[0].From
	if got := peersSelect(t, from); slices.Contains(got, foreign.Name) || !slices.Contains(got, hostKey(mine).Name) {
		t.Errorf("a rule with no peers selects %v on the host", got)
	}
	for _, p := range from {
		if p.IPBlock != nil && !slices.Contains(p.IPBlock.Except, "10.244.0.0/16") {
			t.Errorf("a rule with no peers opens the pod network: %+v", p.IPBlock)
		}
	}
}

// Each attack is refused at create naming the field (and the flag), and
// nothing reaches the host; a selector mimicking another tenant's or
// podbridge's labels is admitted and selects nothing of theirs.
func TestNetworkPolicyAttacksRefused(t *testing.T) {
	ctx := context.Background()
	tc := env.Options.Translate
	ns := namespace(t)
	block := func(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
		return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
	}
	cases := []struct {
		name   string
		np     *networkingv1.NetworkPolicy
		change func(*networkingv1.NetworkPolicy)
		want   []string
	}{
		{"an ipBlock covering the pod network", allowFrom(ns, "", block("10.0.0.0/8")), nil,
			[]string{"spec.ingress[0].from[0].ipBlock.cidr", "10.244.0.0/16", "--" + policy.FlagReservedCIDRs}},
		{"an ipBlock of one pod address", allowFrom(ns, "", block("10.244.1.7/32")), nil, []string{"spec.ingress[0].from[0].ipBlock.cidr", "lies in the reserved range"}},
		{"an ipBlock of a family no range is reserved of", allowFrom(ns, "", block("2001:db8::/32")), nil, []string{"spec.ingress[0].from[0].ipBlock", "--" + policy.FlagReservedCIDRs}},
		{"everything but one reserved range excepted", allowFrom(ns, "", block("0.0.0.0/0", "10.244.0.0/16")), nil, []string{"spec.ingress[0].from[0].ipBlock.cidr", controlplane.ServiceClusterIPRange}},
		{"podbridge's label", allowFrom(ns, "", block("203.0.113.0/24")), func(np *networkingv1.NetworkPolicy) {
			np.Labels = map[string]string{translate.LabelVCluster: "other"}
		}, []string{"metadata.labels"}},
		{"a forged sync ID", allowFrom(ns, "", block("203.0.113.0/24")), func(np *networkingv1.NetworkPolicy) {
			np.Annotations = map[string]string{translate.AnnotationSyncID: "forged"}
		}, []string{translate.AnnotationSyncID}},
	}
	for i, tc0 := range cases {
		t.Run(tc0.name, func(t *testing.T) {
			np := tc0.np
			np.Name = "attack-" + itoa(i)
			if tc0.change != nil {
				tc0.change(np)
			}
			err := virtualClient.Create(ctx, np)
			if err == nil {
				t.Fatal("admitted")
			}
			for _, w := range tc0.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not name %q: %v", w, err)
				}
			}
			if err := hostClient.Get(ctx, hostPolicyKey(tc, np), &networkingv1.NetworkPolicy{}); !apierrors.IsNotFound(err) {
				t.Errorf("host NetworkPolicy after the refusal: %v", err)
			}
		})
	}

	// Outside the reserved ranges, or with them excepted: admitted.
	for i, peer := range []networkingv1.NetworkPolicyPeer{block("203.0.113.0/24"), block("0.0.0.0/0", "10.0.0.0/8")} {
		np := allowFrom(ns, "outside-"+itoa(i), peer)
		if err := virtualClient.Create(ctx, np); err != nil {
			t.Errorf("ipBlock %+v: %v", peer.IPBlock, err)
		}
	}

	// Selectors mimicking another tenant's or podbridge's labels are
	// translated like any other key and select none of their pods.
	otherTenant := tc
	otherTenant.VCluster = "netpol-mimic-other"
	foreign, _, errs := translate.HostPod(labelled(simplePod(ns, "db"), "db"), otherTenant, "foreign")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if err := hostClient.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hostClient.Delete(context.Background(), foreign, client.GracePeriodSeconds(0)) })
	for i, s := range []*metav1.LabelSelector{
		{MatchLabels: map[string]string{translate.LabelVCluster: otherTenant.VCluster, translate.LabelManagedBy: translate.ManagedByValue}},
		{MatchLabels: map[string]string{translate.TenantKey("app"): "db"}},
		{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: translate.LabelVCluster, Operator: metav1.LabelSelectorOpExists}}},
	} {
		np := allowFrom(ns, "mimic-"+itoa(i), networkingv1.NetworkPolicyPeer{PodSelector: s})
		np.Spec.PodSelector = *s
		if err := virtualClient.Create(ctx, np); err != nil {
			t.Fatalf("selector %v: %v", s, err)
		}
		host := getHostPolicy(t, tc, np)
		if got := append(selectedBy(t, &host.Spec.PodSelector), peersSelect(t, host.Spec.Ingress[0].From)...); len(got) > 0 {
			t.Errorf("selector %v selects host pods %v", s, got)
		}
	}
}

// The tenant deletes podbridge's registration: a policy created meanwhile
// has no host policy (the reflector warns); a policy podbridge admitted and
// the tenant changes meanwhile is carried by the reflector through the
// gate: a scoped change reaches the host, an ipBlock over the pod network
// is refused and the host policy keeps what it had.
func TestNetworkPolicyWebhookRegistrationDeleted(t *testing.T) {
	ctx := context.Background()
	tc := env.Options.Translate
	ns := namespace(t)
	admitted := allowFrom(ns, "admitted", networkingv1.NetworkPolicyPeer{PodSelector: webPods()})
	if err := virtualClient.Create(ctx, admitted); err != nil {
		t.Fatal(err)
	}
	deleteRegistration := func(ctx context.Context) error {
		reg := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "podbridge"}}
		return client.IgnoreNotFound(virtualClient.Delete(ctx, reg))
	}
	// change updates admitted while the registration is away.
	change := func(what string, mutate func(*networkingv1.NetworkPolicy)) {
		t.Helper()
		eventually(t, 60*time.Second, what+" stored while the registration is away", func(ctx context.Context) (bool, string) {
			if err := deleteRegistration(ctx); err != nil {
				return false, err.Error()
			}
			current := &networkingv1.NetworkPolicy{}
			if err := virtualClient.Get(ctx, client.ObjectKeyFromObject(admitted), current); err != nil {
				return false, err.Error()
			}
			mutate(current)
			if err := virtualClient.Update(ctx, current); err != nil {
				return false, err.Error()
			}
			return true, ""
		})
	}
	change("a scoped change", func(np *networkingv1.NetworkPolicy) {
		np.Spec.Ingress[0].From = []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{translate.LabelVCluster: "other"}}}}
	})
	eventually(t, 30*time.Second, "the scoped change carried by the reflector", func(context.Context) (bool, string) {
		from := getHostPolicy(t, tc, admitted).Spec.Ingress[0].From
		return len(from) == 1 && from[0].PodSelector.MatchLabels[translate.TenantKey(translate.LabelVCluster)] == "other" &&
			from[0].PodSelector.MatchLabels[translate.LabelVCluster] == tc.VCluster, fmt.Sprint(from)
	})
	change("an ipBlock over the pod network", func(np *networkingv1.NetworkPolicy) {
		np.Spec.Ingress[0].From = []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}}}
	})
	var slipped *networkingv1.NetworkPolicy
	eventually(t, 60*time.Second, "a NetworkPolicy stored while the registration is away", func(ctx context.Context) (bool, string) {
		if err := deleteRegistration(ctx); err != nil {
			return false, err.Error()
		}
		np := allowFrom(ns, "", networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}})
		np.GenerateName = "slipped-"
		if err := virtualClient.Create(ctx, np); err != nil {
			return false, err.Error()
		}
		if np.Annotations[translate.AnnotationSyncID] != "" {
			_ = virtualClient.Delete(ctx, np)
			return false, "admitted by podbridge"
		}
		slipped = np
		return true, ""
	})
	eventually(t, 30*time.Second, "the registration restored", func(ctx context.Context) (bool, string) {
		reg := &admissionregistrationv1.MutatingWebhookConfiguration{}
		err := virtualClient.Get(ctx, client.ObjectKey{Name: "podbridge"}, reg)
		return err == nil && len(reg.Webhooks) == len(webhook.Registration{}.Configuration().Webhooks), fmt.Sprint(err)
	})
	waitForPolicyEvent(t, admitted, reflector.ReasonHostNetworkPolicyRefused)
	waitForPolicyEvent(t, slipped, reflector.ReasonHostNetworkPolicyMissing)
	if from := getHostPolicy(t, tc, admitted).Spec.Ingress[0].From; len(from) != 1 || from[0].IPBlock != nil {
		t.Errorf("host policy took the unchecked ipBlock: %+v", from)
	}
	if err := hostClient.Get(ctx, hostPolicyKey(tc, slipped), &networkingv1.NetworkPolicy{}); !apierrors.IsNotFound(err) {
		t.Errorf("host NetworkPolicy of a policy podbridge never admitted: %v", err)
	}
}

func waitForPolicyEvent(t *testing.T, virtual *networkingv1.NetworkPolicy, reason string) {
	t.Helper()
	eventually(t, 30*time.Second, "a "+reason+" event on "+virtual.Name, func(ctx context.Context) (bool, string) {
		events := &eventsv1.EventList{}
		if err := virtualClient.List(ctx, events, client.InNamespace(virtual.Namespace)); err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range events.Items {
			if e.Regarding.Name == virtual.Name && e.Regarding.Kind == "NetworkPolicy" {
				if e.Reason == reason {
					return true, ""
				}
				seen = append(seen, e.Reason)
			}
		}
		return false, fmt.Sprintf("events %v", seen)
	})
}

// Two tenants, one host namespace: each virtual cluster gets an isolation
// policy that admits ingress to its pods only from its own pods (and
// outside addresses), kept by its reflector (deleted, it comes back);
// policies of the same name and rules each select only their own tenant's
// pods; tenant two's podbridge runs with the manifests' RBAC and meets its
// cap on host NetworkPolicies.
func TestNetworkPoliciesOfTwoTenants(t *testing.T) {
	ctx := context.Background()
	clearSecondVirtual(t)
	limits := caps.Defaults()
	// The isolation policy counts: it is one of the virtual cluster's
	// host NetworkPolicies.
	limits.MaxHostNetworkPolicies = 2
	two := startSecondTenant(t, limits)
	cfgOne, cfgTwo := env.Options.Translate, two.config
	pods := map[string]string{}
	peers := map[string][]networkingv1.NetworkPolicyPeer{}
	for name, side := range map[string]struct {
		c  client.Client
		tc translate.Config
	}{"one": {virtualClient, cfgOne}, "two": {two.client, cfgTwo}} {
		pod := labelled(simplePod("default", "netpol-db"), "db")
		if err := side.c.Create(ctx, pod); err != nil {
			t.Fatalf("tenant %s pod: %v", name, err)
		}
		t.Cleanup(func() { _ = side.c.Delete(context.Background(), pod, client.GracePeriodSeconds(0)) })
		pods[name] = translate.HostName(pod.Name, pod.Namespace, side.tc.VCluster)
		np := allowFrom("default", "netpol-same", networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{}})
		if err := side.c.Create(ctx, np); err != nil {
			t.Fatalf("tenant %s NetworkPolicy: %v", name, err)
		}
		host := getHostPolicy(t, side.tc, np)
		t.Cleanup(func() {
			_ = side.c.Delete(context.Background(), np)
			waitGone(t, hostClient, host, 30*time.Second)
		})
		if got := selectedBy(t, &host.Spec.PodSelector); !slices.Equal(got, []string{pods[name]}) {
			t.Errorf("tenant %s's host policy selects %v, want its own pod %s", name, got, pods[name])
		}
		peers[name] = host.Spec.Ingress[0].From
	}
	for name, from := range peers {
		other := map[string]string{"one": pods["two"], "two": pods["one"]}[name]
		if got := peersSelect(t, from); !slices.Contains(got, pods[name]) || slices.Contains(got, other) {
			t.Errorf("tenant %s's host peers (every namespace) select %v: want its own %s, not %s", name, got, pods[name], other)
		}
	}
	for name, tc := range map[string]translate.Config{"one": cfgOne, "two": cfgTwo} {
		other := map[string]string{"one": pods["two"], "two": pods["one"]}[name]
		iso := &networkingv1.NetworkPolicy{}
		eventually(t, 30*time.Second, "tenant "+name+"'s isolation policy", func(ctx context.Context) (bool, string) {
			err := hostClient.Get(ctx, client.ObjectKey{Namespace: tc.HostNamespace, Name: translate.IsolationPolicyName(tc.VCluster)}, iso)
			return err == nil, fmt.Sprint(err)
		})
		if got := selectedBy(t, &iso.Spec.PodSelector); !slices.Contains(got, pods[name]) || slices.Contains(got, other) {
			t.Errorf("tenant %s's isolation policy selects %v", name, got)
		}
		if got := peersSelect(t, iso.Spec.Ingress[0].From); slices.Contains(got, other) || !slices.Contains(got, pods[name]) {
			t.Errorf("tenant %s's isolation policy admits %v", name, got)
		}
	}
	// Deleted on the host, the isolation policy comes back.
	iso := &networkingv1.NetworkPolicy{}
	if err := hostClient.Get(ctx, client.ObjectKey{Namespace: cfgOne.HostNamespace, Name: translate.IsolationPolicyName(cfgOne.VCluster)}, iso); err != nil {
		t.Fatal(err)
	}
	if err := hostClient.Delete(ctx, iso); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the isolation policy restored", func(ctx context.Context) (bool, string) {
		got := &networkingv1.NetworkPolicy{}
		err := hostClient.Get(ctx, client.ObjectKeyFromObject(iso), got)
		return err == nil && got.UID != "" && got.UID != iso.UID, fmt.Sprint(err)
	})

	// Tenant two has two host NetworkPolicies: its cap is met.
	over := allowFrom("default", "netpol-over", networkingv1.NetworkPolicyPeer{PodSelector: webPods()})
	err := two.client.Create(ctx, over)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "--"+caps.FlagMaxHostNetworkPolicies) {
		t.Errorf("a NetworkPolicy past --%s=2: %v", caps.FlagMaxHostNetworkPolicies, err)
	}
	if err := hostClient.Get(ctx, hostPolicyKey(cfgTwo, over), &networkingv1.NetworkPolicy{}); !apierrors.IsNotFound(err) {
		t.Errorf("host NetworkPolicy past the cap: %v", err)
	}
}
