package realnode

import "testing"

// Stop unmounts what is under the node's folders and nothing else: a
// sibling folder sharing a name prefix is not the node's.
func TestUnder(t *testing.T) {
	for _, tc := range []struct {
		point, root string
		want        bool
	}{
		{"/tmp/s/realnode", "/tmp/s/realnode", true},
		{"/tmp/s/realnode/kubelet/root/pods/x/volumes/v", "/tmp/s/realnode", true},
		{"/tmp/s/realnode/", "/tmp/s/realnode/", true},
		{"/tmp/s/realnode-other", "/tmp/s/realnode", false},
		{"/tmp/s", "/tmp/s/realnode", false},
		{"/run/netns/cni-1234", "/run/netns/cni-", true},
		{"/run/netns/other", "/run/netns/cni-", false},
		{"/anything", "", false},
	} {
		if got := under(tc.point, tc.root); got != tc.want {
			t.Errorf("under(%q, %q) = %v, want %v", tc.point, tc.root, got, tc.want)
		}
	}
}

// Mount points with spaces are escaped in /proc/self/mountinfo.
func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/tmp/a\040b`: "/tmp/a b",
		`/plain`:      "/plain",
		`/tab\011x`:   "/tab\tx",
		`/trailing\`:  `/trailing\`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}
