package devenv

import "testing"

// The test bed's fixed Service addresses are the 2nd and 10th of the
// host's range, and a range too small for them is refused.
func TestServiceAddresses(t *testing.T) {
	for _, tc := range []struct {
		cidr, apiServer, dns string
		ok                   bool
	}{
		{"10.0.0.0/16", "10.0.0.2", "10.0.0.10", true},
		{"10.202.0.0/16", "10.202.0.2", "10.202.0.10", true},
		{"10.202.7.9/16", "10.202.0.2", "10.202.0.10", true},
		{"fd00:10::/108", "fd00:10::2", "fd00:10::a", true},
		{"10.0.0.0/29", "", "", false},
		{"not-a-range", "", "", false},
	} {
		apiServer, dns, err := serviceAddresses(tc.cidr)
		if (err == nil) != tc.ok || (tc.ok && (apiServer != tc.apiServer || dns != tc.dns)) {
			t.Errorf("%s: %q %q %v, want %q %q ok=%v", tc.cidr, apiServer, dns, err, tc.apiServer, tc.dns, tc.ok)
		}
	}
}
