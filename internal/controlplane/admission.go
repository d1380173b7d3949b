package controlplane

import (
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// WebhookClient is the client certificate a virtual apiserver presents to
// admission webhooks, as a platform team configures it: an
// AdmissionConfiguration whose MutatingAdmissionWebhook plugin names a
// kubeconfig with one user per webhook address.
type WebhookClient struct {
	// Names are the kubeconfig user names, matched by kube-apiserver
	// against the webhook URL's host:port ("127.0.0.1:9443"; the port is
	// dropped when it is 443), then "*.domain" prefixes, then "*".
	Names []string
	// CertFile and KeyFile are read by path, so the apiserver picks up a
	// renewed certificate without a restart.
	CertFile, KeyFile string
}

// writeAdmissionConfig writes the AdmissionConfiguration and its webhook
// kubeconfig into dir and returns the configuration's path, for
// --admission-control-config-file.
func (w *WebhookClient) writeAdmissionConfig(dir string) (string, error) {
	kubeconfig := clientcmdapi.NewConfig()
	for _, name := range w.Names {
		kubeconfig.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificate: w.CertFile, ClientKey: w.KeyFile}
	}
	kubeconfigPath := filepath.Join(dir, "webhook-client.kubeconfig")
	if err := clientcmd.WriteToFile(*kubeconfig, kubeconfigPath); err != nil {
		return "", fmt.Errorf("writing the webhook client kubeconfig: %w", err)
	}
	config := fmt.Sprintf(`apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: MutatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: %q
`, kubeconfigPath)
	path := filepath.Join(dir, "admission-configuration.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		return "", fmt.Errorf("writing the admission configuration: %w", err)
	}
	return path, nil
}
