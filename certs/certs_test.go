package certs

import (
	"bytes"
	"crypto/x509"
	"testing"
	"time"
)

func TestRenewKeepsTheCA(t *testing.T) {
	now := time.Now()
	first, err := NewSelfSigned([]string{"podbridge-webhook.ns.svc", "127.0.0.1"}, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	renewed, err := first.Renew([]string{"podbridge-webhook.ns.svc", "127.0.0.1"}, now.Add(50*time.Minute), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.CA, renewed.CA) || bytes.Equal(first.Cert, renewed.Cert) {
		t.Fatal("renewal should issue a new certificate under the same CA")
	}
	cert, err := parseCert(renewed.Cert)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := parseCert(renewed.CA)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, name := range []string{"podbridge-webhook.ns.svc", "127.0.0.1"} {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: name, Roots: pool, CurrentTime: now.Add(time.Hour)}); err != nil {
			t.Errorf("renewed certificate does not verify for %s: %v", name, err)
		}
	}
}

func TestMergeCABundle(t *testing.T) {
	now := time.Now()
	ca := func(validity time.Duration) []byte {
		b, err := NewSelfSigned([]string{"x"}, now, validity)
		if err != nil {
			t.Fatal(err)
		}
		return b.CA
	}
	oldCA, newCA, newerCA := ca(time.Hour), ca(time.Hour), ca(time.Hour)
	expired, err := NewSelfSigned([]string{"x"}, now.Add(-100*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name              string
		current, previous []byte
		want              [][]byte
	}{
		{"first injection", oldCA, nil, [][]byte{oldCA}},
		{"unchanged", oldCA, oldCA, [][]byte{oldCA}},
		{"rotation keeps the old CA", newCA, oldCA, [][]byte{newCA, oldCA}},
		{"second rotation drops the oldest", newerCA, append(append([]byte{}, newCA...), oldCA...), [][]byte{newerCA, newCA}},
		{"expired CAs are dropped", newCA, expired.CA, [][]byte{newCA}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := MergeCABundle(tt.current, tt.previous, now)
			if want := bytes.Join(tt.want, nil); !bytes.Equal(got, want) {
				t.Errorf("got %d certificates, want %d", len(certificates(got)), len(tt.want))
			}
		})
	}
}
