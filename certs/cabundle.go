package certs

import (
	"crypto/x509"
	"encoding/pem"
	"time"
)

// MergeCABundle returns the bundle to inject: every certificate of current,
// then the one newest certificate of previous that current lacks and that
// is still valid at now. A replica still serving a certificate of the old
// CA thus stays trusted while the new one rolls out, and the bundle does
// not grow with every rotation.
func MergeCABundle(current, previous []byte, now time.Time) []byte {
	var out []byte
	seen := map[string]bool{}
	for _, block := range certificates(current) {
		if !seen[string(block.Bytes)] {
			seen[string(block.Bytes)] = true
			out = append(out, pem.EncodeToMemory(block)...)
		}
	}
	for _, block := range certificates(previous) {
		if seen[string(block.Bytes)] {
			continue
		}
		if cert, err := x509.ParseCertificate(block.Bytes); err == nil && now.Before(cert.NotAfter) {
			return append(out, pem.EncodeToMemory(block)...)
		}
	}
	return out
}

func certificates(data []byte) []*pem.Block {
	var blocks []*pem.Block
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return blocks
		}
		if block.Type == "CERTIFICATE" {
			blocks = append(blocks, block)
		}
	}
}

// BundleWithin reports whether bundle holds every certificate of required
// and none beyond required and allowed: a bundle podbridge would have
// injected, whichever previous CA a replica still remembers.
func BundleWithin(bundle, required, allowed []byte) bool {
	ok := map[string]bool{}
	have := map[string]bool{}
	for _, b := range certificates(bundle) {
		have[string(b.Bytes)] = true
	}
	for _, b := range certificates(required) {
		if !have[string(b.Bytes)] {
			return false
		}
		ok[string(b.Bytes)] = true
	}
	for _, b := range certificates(allowed) {
		ok[string(b.Bytes)] = true
	}
	for c := range have {
		if !ok[c] {
			return false
		}
	}
	return len(have) > 0
}
