package translate

import (
	"crypto/sha256"
	"encoding/base32"
	"strings"
)

const (
	// maxLabelLength is the longest DNS label; host pod names stay within
	// it so they are valid hostnames too.
	maxLabelLength = 63
	// hashLength characters of base32 SHA-256 (125 bits) make collisions
	// practically impossible while leaving room for a readable prefix.
	hashLength = 25
	separator  = "-x-"
)

// hashEncoding is lower-case base32 without padding: only DNS-label characters.
var hashEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// HostName is the name of the host pod that runs virtual pod name in
// namespace of virtual cluster vcluster: "<name>-x-<namespace>-x-<vcluster>".
//
// That readable form is used only when it is shorter than 64 characters and
// no part could blur the separators (name "a-x", namespace "b" and name "a",
// namespace "x-b" would otherwise both give "a-x-x-b-x-…"). Otherwise the
// name is a readable prefix plus a hash of the three parts, so the mapping
// stays deterministic and no two virtual pods share a host name.
func HostName(name, namespace, vcluster string) string {
	full := name + separator + namespace + separator + vcluster
	if len(full) <= maxLabelLength && unambiguous(name) && unambiguous(namespace) && unambiguous(vcluster) {
		return full
	}
	sum := sha256.Sum256([]byte(name + "/" + namespace + "/" + vcluster))
	hash := hashEncoding.EncodeToString(sum[:])[:hashLength]
	prefix := strings.TrimRight(full[:min(len(full), maxLabelLength-hashLength-1)], "-.")
	return prefix + "-" + hash
}

// unambiguous reports whether part can sit between separators without
// creating or hiding one.
func unambiguous(part string) bool {
	return !strings.Contains(part, separator) && !strings.HasSuffix(part, "-x") && !strings.HasPrefix(part, "x-")
}

// Hostname is the host pod's spec.hostname for a virtual pod name: the name
// the tenant's process sees, kept a valid DNS label (dots become dashes, at
// most 63 characters, never ending in a dash).
func Hostname(name string) string {
	h := strings.ReplaceAll(name, ".", "-")
	if len(h) > maxLabelLength {
		h = h[:maxLabelLength]
	}
	return strings.TrimRight(h, "-")
}
