package realnode

import "testing"

// The drop counter a test relies on is read from `iptables -L -v -x -n`
// by the rule's comment, not by position.
func TestCommentCounter(t *testing.T) {
	listing := []byte(`Chain PODBRIDGE-RN-FORWARD (1 references)
    pkts      bytes target     prot opt in     out     source               destination
      12     1008 ACCEPT     all  --  pbr0   pbr0    0.0.0.0/0            0.0.0.0/0
       3      126 DROP       all  --  pbr0   *       0.0.0.0/0            0.0.0.0/0            /* ` + OffMachineComment + ` */
       0        0 DROP       all  --  *      pbr0    0.0.0.0/0            0.0.0.0/0            /* ` + inboundComment + ` */
`)
	if n, err := commentCounter(listing, OffMachineComment); err != nil || n != 3 {
		t.Errorf("off-machine drops: %d, %v; want 3", n, err)
	}
	if n, err := commentCounter(listing, inboundComment); err != nil || n != 0 {
		t.Errorf("inbound drops: %d, %v; want 0", n, err)
	}
	if _, err := commentCounter(listing, "absent"); err == nil {
		t.Error("a rule that is not there was read")
	}
}
