package controlplane

import (
	"errors"
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

// writeAdmissionConfig writes into dir the AdmissionConfiguration of a
// virtual apiserver, as a platform team configures it, and returns its
// path, for --admission-control-config-file: the webhook client's
// kubeconfig (when client is set) and podbridge's static admission
// policies (package staticpolicy; when policies is not empty), which the
// apiserver loads from a folder of their own. The files it names are named
// by absolute path, which kube-apiserver requires, whatever dir is.
func writeAdmissionConfig(dir string, client *WebhookClient, policies []byte) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("locating the admission configuration's folder: %w", err)
	}
	config := "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n"
	if client != nil {
		// A relative path in a kubeconfig is read from the kubeconfig's folder.
		certFile, certErr := filepath.Abs(client.CertFile)
		keyFile, keyErr := filepath.Abs(client.KeyFile)
		if err := errors.Join(certErr, keyErr); err != nil {
			return "", fmt.Errorf("locating the webhook client's certificate: %w", err)
		}
		kubeconfig := clientcmdapi.NewConfig()
		for _, name := range client.Names {
			kubeconfig.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificate: certFile, ClientKey: keyFile}
		}
		kubeconfigPath := filepath.Join(dir, "webhook-client.kubeconfig")
		if err := clientcmd.WriteToFile(*kubeconfig, kubeconfigPath); err != nil {
			return "", fmt.Errorf("writing the webhook client kubeconfig: %w", err)
		}
		config += fmt.Sprintf(`- name: MutatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: %q
`, kubeconfigPath)
	}
	if len(policies) > 0 {
		policyDir := filepath.Join(dir, "static-policies")
		if err := os.MkdirAll(policyDir, 0o700); err != nil {
			return "", fmt.Errorf("creating the static policies' folder: %w", err)
		}
		if err := os.WriteFile(filepath.Join(policyDir, "podbridge.yaml"), policies, 0o600); err != nil {
			return "", fmt.Errorf("writing the static admission policies: %w", err)
		}
		config += fmt.Sprintf(`- name: ValidatingAdmissionPolicy
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: ValidatingAdmissionPolicyConfiguration
    staticManifestsDir: %q
`, policyDir)
	}
	path := filepath.Join(dir, "admission-configuration.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		return "", fmt.Errorf("writing the admission configuration: %w", err)
	}
	return path, nil
}
