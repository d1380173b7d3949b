package translate

import (
	"crypto/sha256"
	"slices"
)

// Dependencies are the host objects a host pod needs before it can start:
// copies of virtual ConfigMaps and Secrets, and Secrets holding tokens
// requested from the virtual apiserver.
type Dependencies struct {
	ConfigMaps []Reference `json:"configMaps,omitempty"`
	Secrets    []Reference `json:"secrets,omitempty"`
	Tokens     []Token     `json:"tokens,omitempty"`
}

// Reference is a virtual object in the pod's namespace and its host copy.
type Reference struct {
	Name     string `json:"name"`
	HostName string `json:"hostName"`
	// Optional references may point at objects that do not exist.
	Optional bool `json:"optional,omitempty"`
}

// Token is a service-account token the host pod mounts in place of a
// projected serviceAccountToken source.
type Token struct {
	ServiceAccount    string `json:"serviceAccount"`
	Audience          string `json:"audience,omitempty"`
	ExpirationSeconds int64  `json:"expirationSeconds"`
	// HostSecret receives the token under TokenKey.
	HostSecret string `json:"hostSecret"`
}

// TokenKey is the key of the token in a token Secret.
const TokenKey = "token"

func (d *Dependencies) add(list *[]Reference, name, hostName string, optional bool) {
	i := slices.IndexFunc(*list, func(r Reference) bool { return r.Name == name })
	if i < 0 {
		*list = append(*list, Reference{Name: name, HostName: hostName, Optional: optional})
		return
	}
	// One required use makes the copy required.
	(*list)[i].Optional = (*list)[i].Optional && optional
}

func (t *podTranslator) configMap(name string, optional *bool) string {
	host := HostName(name, t.pod.Namespace, t.cfg.VCluster)
	t.deps.add(&t.deps.ConfigMaps, name, host, ptrTrue(optional))
	return host
}

func (t *podTranslator) secret(name string, optional *bool) string {
	host := HostName(name, t.pod.Namespace, t.cfg.VCluster)
	t.deps.add(&t.deps.Secrets, name, host, ptrTrue(optional))
	return host
}

// token records a token for volume's serviceAccountToken source and
// returns the host Secret that will hold it.
func (t *podTranslator) token(volume, audience string, expirationSeconds *int64) string {
	host := TokenSecretName(t.pod.Name, t.pod.Namespace, t.cfg.VCluster, volume, audience)
	if !slices.ContainsFunc(t.deps.Tokens, func(tok Token) bool { return tok.HostSecret == host }) {
		exp := int64(3600)
		if expirationSeconds != nil {
			exp = *expirationSeconds
		}
		t.deps.Tokens = append(t.deps.Tokens, Token{ServiceAccount: serviceAccountOf(t.pod), Audience: audience, ExpirationSeconds: exp, HostSecret: host})
	}
	return host
}

// TokenSecretName names the host Secret holding the token of one projected
// source of one pod. It is a hash with a fixed prefix, so it can never
// equal the host name of a copied virtual Secret (those end in
// "-x-<vcluster>" or hash a different input).
func TokenSecretName(pod, namespace, vcluster, volume, audience string) string {
	sum := sha256.Sum256([]byte("token\x00" + namespace + "\x00" + pod + "\x00" + vcluster + "\x00" + volume + "\x00" + audience))
	return "podbridge-token-" + hashEncoding.EncodeToString(sum[:])[:hashLength]
}

func ptrTrue(b *bool) bool { return b != nil && *b }
