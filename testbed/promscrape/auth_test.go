package promscrape

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/podbridge/podbridge/certs"
)

// BearerClient presents its token on every scrape and trusts only the CA
// it was given.
func TestBearerClientPresentsItsTokenToTrustedServersOnly(t *testing.T) {
	var got []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
		_, _ = w.Write([]byte(exposition))
	}))
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	trust, err := Trusting(ca)
	if err != nil {
		t.Fatal(err)
	}
	fams, err := Scrape(context.Background(), BearerClient("s3cret", trust), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if fams.Sum("depth", nil) != 9 {
		t.Errorf("depth sums to %v, want 9", fams.Sum("depth", nil))
	}
	if len(got) != 1 || got[0] != "Bearer s3cret" {
		t.Errorf("Authorization headers %q, want one Bearer s3cret", got)
	}

	// A server whose certificate another CA issued gets no request.
	otherCA, err := certs.NewSelfSigned([]string{"127.0.0.1"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	distrust, err := Trusting(otherCA.CA)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Scrape(context.Background(), BearerClient("s3cret", distrust), srv.URL); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("scraping a server of another CA: %v, want a certificate error", err)
	}
	if len(got) != 1 {
		t.Errorf("the server got %d requests, want the first only", len(got))
	}

	if _, err := Trusting([]byte("no PEM here")); err == nil {
		t.Error("Trusting accepted a bundle without a certificate")
	}
}
