package metricsauth

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Whatever the address and certificate folder, the metrics are served
// over TLS (HTTP/1.1, TLS 1.2 or later) behind the filter that asks the
// host apiserver: there is no setting that serves them in the clear.
func TestOptionsAlwaysServeSecurely(t *testing.T) {
	for _, tc := range []struct{ bind, certDir string }{{":8443", ""}, {"127.0.0.1:0", "/certs"}, {"0", ""}} {
		o := Options(tc.bind, tc.certDir)
		if !o.SecureServing || o.FilterProvider == nil {
			t.Errorf("%+v: SecureServing %t, filter set %t", tc, o.SecureServing, o.FilterProvider != nil)
		}
		if o.BindAddress != tc.bind || o.CertDir != tc.certDir || o.CertName != CertFile || o.KeyName != KeyFile {
			t.Errorf("%+v: bind %q, certificate %s/%s and %s", tc, o.BindAddress, o.CertDir, o.CertName, o.KeyName)
		}
		c := &tls.Config{NextProtos: []string{"h2"}} // controller-runtime's starting point
		for _, f := range o.TLSOpts {
			f(c)
		}
		if c.MinVersion < tls.VersionTLS12 || !slices.Equal(c.NextProtos, []string{"http/1.1"}) {
			t.Errorf("%+v: TLS minimum %x, protocols %v", tc, c.MinVersion, c.NextProtos)
		}
	}
}

func TestCheckCertDir(t *testing.T) {
	if err := CheckCertDir(""); err != nil {
		t.Errorf("no folder (self-signed): %v", err)
	}
	dir := t.TempDir()
	if err := CheckCertDir(dir); err == nil {
		t.Error("an empty folder passed")
	}
	if err := os.WriteFile(filepath.Join(dir, CertFile), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckCertDir(dir); err == nil {
		t.Error("a folder without tls.key passed")
	}
	if err := os.WriteFile(filepath.Join(dir, KeyFile), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckCertDir(dir); err != nil {
		t.Errorf("a folder with both: %v", err)
	}
}
