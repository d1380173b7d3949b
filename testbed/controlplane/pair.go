package controlplane

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podbridge/podbridge/certs"
	"github.com/podbridge/podbridge/internal/kube"
	"github.com/podbridge/podbridge/internal/ownership"
	"github.com/podbridge/podbridge/translate"
)

// PairOptions configure a host and a virtual control plane started
// together, the virtual apiserver presenting podbridge's client
// certificate.
type PairOptions struct {
	// Host and Virtual configure each plane; StartPair sets Virtual's
	// WebhookClient, and its KubeletClient when KubeletCAFile is set.
	Host, Virtual Options
	// ClientCommonName is the subject of the client certificate the
	// virtual apiserver presents: the one a virtual cluster's podbridge
	// accepts (certs.ClientCommonNameFor).
	ClientCommonName string
	// WebhookNames are the webhooks the virtual apiserver presents the
	// certificate to, as kube-apiserver names them ("host:port"; see
	// WebhookClient.Names). Empty: every webhook ("*"), for webhooks on
	// ports chosen later (replicas, a load balancer).
	WebhookNames []string
	// KubeletCAFile, when set, has the virtual apiserver present the same
	// certificate to podbridge's kubelet API too, whose serving
	// certificate it verifies against this CA.
	KubeletCAFile string
}

// Pair is a running host and virtual control plane.
type Pair struct {
	Host, Virtual *Plane
	// Client is the client certificate the virtual apiserver presents.
	Client *ClientCredentials
}

// StartPair issues the virtual apiserver's client certificate (into
// o.Virtual.Dir/webhook-client, which the apiserver reads at start) and
// starts both planes in parallel. On an error it stops what it started.
func StartPair(ctx context.Context, o PairOptions) (*Pair, error) {
	creds, err := IssueClient(o.Virtual.Dir, o.ClientCommonName)
	if err != nil {
		return nil, err
	}
	p := &Pair{Client: creds}
	names := o.WebhookNames
	if len(names) == 0 {
		names = []string{"*"}
	}
	virtualOpts := o.Virtual
	virtualOpts.WebhookClient = creds.ForAPIServer(names...)
	if o.KubeletCAFile != "" {
		virtualOpts.KubeletClient = &KubeletClient{CertFile: creds.CertFile, KeyFile: creds.KeyFile, CAFile: o.KubeletCAFile}
	}
	hostErr := make(chan error, 1)
	go func() {
		var err error
		p.Host, err = StartHost(ctx, o.Host)
		hostErr <- err
	}()
	p.Virtual, err = StartVirtual(ctx, virtualOpts)
	if err = errors.Join(err, <-hostErr); err != nil {
		return nil, fmt.Errorf("starting the host and virtual control planes: %w", errors.Join(err, p.Stop()))
	}
	return p, nil
}

// Stop stops the virtual plane, then the host.
func (p *Pair) Stop() error {
	if p == nil {
		return nil
	}
	return errors.Join(p.Virtual.Stop(), p.Host.Stop())
}

// ClientCredentials are the client CA and certificate a virtual apiserver
// presents to podbridge's webhook and kubelet API, as podbridge's
// self-managed mode issues them.
type ClientCredentials struct {
	Bundle *certs.Bundle
	// Dir holds tls.crt, tls.key and ca.crt.
	Dir               string
	CertFile, KeyFile string
}

// IssueClient issues a client CA and a certificate for commonName
// (certs.ClientCommonNameFor the virtual cluster, which its podbridge
// accepts) and writes them into dir/webhook-client for the virtual
// apiserver to read.
func IssueClient(dir, commonName string) (*ClientCredentials, error) {
	b, err := certs.NewClient(commonName, time.Now(), 365*24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("issuing the virtual apiserver's client certificate: %w", err)
	}
	certDir := filepath.Join(dir, "webhook-client")
	if err := b.WriteDir(certDir); err != nil {
		return nil, err
	}
	return &ClientCredentials{Bundle: b, Dir: certDir, CertFile: filepath.Join(certDir, certs.CertFile), KeyFile: filepath.Join(certDir, certs.KeyFile)}, nil
}

// ForAPIServer configures a virtual apiserver to present the certificate
// to webhooks at names (kube-apiserver's kubeconfig user names:
// "host:port", or "*" for every webhook).
func (c *ClientCredentials) ForAPIServer(names ...string) *WebhookClient {
	return &WebhookClient{Names: names, CertFile: c.CertFile, KeyFile: c.KeyFile}
}

// StoreInHost stores the credentials in the host Secret a self-managed
// podbridge of virtual cluster tc keeps them in (certs.DefaultClientSecretName,
// in tc's host namespace, marked as tc's), where it finds and trusts them
// instead of issuing its own.
func (c *ClientCredentials) StoreInHost(ctx context.Context, cfg *rest.Config, tc translate.Config) error {
	cl, err := client.New(cfg, client.Options{Scheme: kube.Scheme})
	if err != nil {
		return err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: certs.DefaultClientSecretName, Namespace: tc.HostNamespace, Labels: map[string]string{translate.LabelManagedBy: translate.ManagedByValue}},
		Type:       corev1.SecretTypeTLS,
		Data: map[string][]byte{
			certs.CertFile: c.Bundle.Cert, certs.KeyFile: c.Bundle.Key,
			certs.CAFile: c.Bundle.CA, certs.CAKeyFile: c.Bundle.CAKey,
		},
	}
	ownership.Mark(&secret.ObjectMeta, tc.VCluster)
	if err := cl.Create(ctx, secret); err != nil {
		return fmt.Errorf("storing the webhook client certificate in the host: %w", err)
	}
	return nil
}
