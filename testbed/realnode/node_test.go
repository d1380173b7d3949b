package realnode

import "testing"

// The kernel refuses a multicast address on a bridge, and a universally
// administered one could be some vendor's card: every choice must be
// unicast and locally administered.
func TestBridgeMACIsUnicastAndLocallyAdministered(t *testing.T) {
	for range 1000 {
		mac, err := bridgeMAC()
		if err != nil {
			t.Fatal(err)
		}
		if len(mac) != 6 || mac[0]&0x01 != 0 || mac[0]&0x02 == 0 {
			t.Fatalf("bridgeMAC() = %s: want 6 bytes, unicast, locally administered", mac)
		}
	}
}
