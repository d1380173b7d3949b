package kubeletproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/proxy"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/streaming/pkg/httpstream"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podbridge/podbridge/translate"
)

// Handler answers the kubelet API paths the apiserver uses for pod
// subresources. It holds no state per request: every request reads the
// stored virtual pod and its host pod live, so a pod deleted, re-created
// or re-mapped a moment ago is judged as it is now.
type Handler struct {
	// Virtual reads stored virtual pods (the virtual apiserver, live).
	Virtual client.Reader
	// Host reads host pods (the host apiserver, live).
	Host client.Reader
	// HostLogs streams host pod logs with podbridge's host identity.
	HostLogs kubernetes.Interface
	// Config names the virtual cluster and its host namespace.
	Config translate.Config
	// MaxStreams caps the log reads and exec, attach and port-forward
	// streams carried at once (DefaultMaxStreams if not positive): each
	// holds a connection to the host apiserver, which all tenants share,
	// and none has a time limit.
	MaxStreams int

	carried atomic.Int64

	hostURL *url.URL
	// upgrade dials the host apiserver with podbridge's host identity for
	// exec, attach and port-forward.
	upgrade proxy.UpgradeRequestRoundTripper
	mux     *http.ServeMux
}

// NewHandler builds a Handler that carries requests to the host with host
// (podbridge's host identity) and reads virtual pods with virtual.
func NewHandler(host *rest.Config, hostReader, virtualReader client.Reader, cfg translate.Config) (*Handler, error) {
	// Streams last as long as the tenant keeps them open: no client timeout.
	streaming := rest.CopyConfig(host)
	streaming.Timeout = 0
	logs, err := kubernetes.NewForConfig(streaming)
	if err != nil {
		return nil, fmt.Errorf("creating the host log client: %w", err)
	}
	hostURL, _, err := rest.DefaultServerUrlFor(streaming)
	if err != nil {
		return nil, fmt.Errorf("host apiserver address: %w", err)
	}
	tlsConfig, err := rest.TLSConfigFor(streaming)
	if err != nil {
		return nil, fmt.Errorf("host TLS configuration: %w", err)
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	// The connection transport gives the dialer and TLS configuration (the
	// host client certificate, if any); the wrappers add the rest of the
	// host identity (bearer token, refreshed from its file) to the request.
	conn := &http.Transport{TLSClientConfig: tlsConfig, DialContext: dialer.DialContext}
	identity, err := rest.HTTPWrappersForConfig(streaming, proxy.MirrorRequest)
	if err != nil {
		return nil, fmt.Errorf("host identity: %w", err)
	}
	h := &Handler{
		Virtual: virtualReader, Host: hostReader, HostLogs: logs, Config: cfg,
		hostURL: hostURL,
		upgrade: proxy.NewUpgradeRequestRoundTripper(conn, identity),
	}
	h.routes()
	return h, nil
}

func (h *Handler) routes() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", h.logs)
	for _, sub := range []string{"exec", "attach"} {
		mux.HandleFunc("/"+sub+"/{namespace}/{pod}/{container}", h.stream(sub))
		mux.HandleFunc("/"+sub+"/{namespace}/{pod}/{uid}/{container}", h.stream(sub))
	}
	mux.HandleFunc("/portForward/{namespace}/{pod}", h.stream("portforward"))
	mux.HandleFunc("/portForward/{namespace}/{pod}/{uid}", h.stream("portforward"))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, apierrors.NewNotFound(schema.GroupResource{}, r.URL.Path).Status())
	})
	h.mux = mux
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// DefaultMaxStreams is how many log reads and streams one replica carries
// at once when not told otherwise.
const DefaultMaxStreams = 1000

// admit takes one of the MaxStreams places, or answers 429. The caller
// calls the returned release when its request ends.
func (h *Handler) admit(w http.ResponseWriter, r *http.Request) (release func(), ok bool) {
	limit := int64(h.MaxStreams)
	if limit <= 0 {
		limit = DefaultMaxStreams
	}
	if h.carried.Add(1) > limit {
		h.carried.Add(-1)
		h.refuse(w, r, apierrors.NewTooManyRequests(fmt.Sprintf("podbridge carries at most %d log reads and streams at once", limit), 1))
		return nil, false
	}
	return func() { h.carried.Add(-1) }, true
}

// target is the host side of a request: the host pod and the container.
type target struct {
	pod       string
	container string
}

// resolve maps the path's virtual pod to its host pod. The path is the
// caller's: every part is checked as a name first, the virtual pod is the
// stored one, the host pod is the one podbridge names for it in this
// virtual cluster's host namespace and must claim it, and the container
// must be in the virtual pod's own spec and in the same list of the host
// pod's (a host-only container, added on the host under a name the tenant
// also uses in another list, is never reached).
func (h *Handler) resolve(ctx context.Context, r *http.Request, withContainer bool) (*target, *apierrors.StatusError) {
	namespace, name, uid, container := r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("uid"), r.PathValue("container")
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Label(namespace) {
		errs = append(errs, field.Invalid(field.NewPath("namespace"), namespace, msg))
	}
	for _, msg := range validation.IsDNS1123Subdomain(name) {
		errs = append(errs, field.Invalid(field.NewPath("pod"), name, msg))
	}
	if withContainer {
		for _, msg := range validation.IsDNS1123Label(container) {
			errs = append(errs, field.Invalid(field.NewPath("container"), container, msg))
		}
	}
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(schema.GroupKind{Kind: "Pod"}, name, errs)
	}
	virtual := &corev1.Pod{}
	if err := h.Virtual.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, virtual); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, apierrors.NewNotFound(corev1.Resource("pods"), namespace+"/"+name)
		}
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("reading the virtual pod: %v", err))
	}
	if uid != "" && types.UID(uid) != virtual.UID {
		return nil, apierrors.NewNotFound(corev1.Resource("pods"), namespace+"/"+name+" with UID "+uid)
	}
	list := ""
	if withContainer {
		if list = translate.ContainerList(&virtual.Spec, container); list == "" {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", container, name))
		}
	}
	hostName := translate.HostName(virtual.Name, virtual.Namespace, h.Config.VCluster)
	host := &corev1.Pod{}
	if err := h.Host.Get(ctx, types.NamespacedName{Namespace: h.Config.HostNamespace, Name: hostName}, host); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, apierrors.NewNotFound(corev1.Resource("pods"), namespace+"/"+name+": its host pod does not exist")
		}
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("reading the host pod: %v", err))
	}
	if host.Labels[translate.LabelManagedBy] != translate.ManagedByValue || host.Labels[translate.LabelVCluster] != h.Config.VCluster ||
		host.Annotations[translate.AnnotationVCluster] != h.Config.VCluster || !translate.Claims(virtual, host) {
		return nil, apierrors.NewNotFound(corev1.Resource("pods"), namespace+"/"+name+": no host pod of this virtual cluster claims it")
	}
	if withContainer && translate.ContainerList(&host.Spec, container) != list {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("container %s of pod %s is not on its host pod", container, name))
	}
	if list == translate.ListEphemeralContainers && !translate.AddedByReflector(host, container) {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("container %s of pod %s was not added to its host pod by podbridge", container, name))
	}
	return &target{pod: hostName, container: container}, nil
}

// logs streams the host container's log, flushing as bytes arrive, so a
// follow survives any silence and nothing is buffered whole.
func (h *Handler) logs(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	opts, errs := logOptions(r.URL.Query())
	if len(errs) > 0 {
		h.refuse(w, r, apierrors.NewInvalid(schema.GroupKind{Kind: "PodLogOptions"}, r.PathValue("pod"), errs))
		return
	}
	t, status := h.resolve(ctx, r, true)
	if status != nil {
		h.refuse(w, r, status)
		return
	}
	opts.Container = t.container
	release, ok := h.admit(w, r)
	if !ok {
		return
	}
	defer release()
	requests.WithLabelValues("log", "carried").Inc()
	stream, err := h.HostLogs.CoreV1().Pods(h.Config.HostNamespace).GetLogs(t.pod, opts).Stream(ctx)
	if err != nil {
		var s apierrors.APIStatus
		if errors.As(err, &s) {
			h.refuse(w, r, &apierrors.StatusError{ErrStatus: s.Status()})
			return
		}
		h.refuse(w, r, apierrors.NewServiceUnavailable(fmt.Sprintf("reading the host pod's log: %v", err)))
		return
	}
	defer stream.Close()
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	flush := http.NewResponseController(w)
	_ = flush.Flush()
	buf := make([]byte, 32*1024)
	for {
		n, err := stream.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return // the caller went away; the deferred Close ends the host stream.
			}
			if ferr := flush.Flush(); ferr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				logf.FromContext(ctx).Info("Host log stream ended with an error", "pod", t.pod, "container", t.container, "error", err.Error())
			}
			return
		}
	}
}

// logOptions reads the kubelet's log query: the parameters the apiserver
// sends (names as in PodLogOptions).
func logOptions(q url.Values) (*corev1.PodLogOptions, field.ErrorList) {
	opts := &corev1.PodLogOptions{}
	var errs field.ErrorList
	boolean := func(name string, into *bool) {
		if v := q.Get(name); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, field.Invalid(field.NewPath(name), v, "must be true or false"))
			}
			*into = b
		}
	}
	integer := func(name string, least int64) *int64 {
		v := q.Get(name)
		if v == "" {
			return nil
		}
		i, err := strconv.ParseInt(v, 10, 64)
		if err != nil || i < least {
			errs = append(errs, field.Invalid(field.NewPath(name), v, fmt.Sprintf("must be an integer of at least %d", least)))
			return nil
		}
		return &i
	}
	boolean("follow", &opts.Follow)
	boolean("previous", &opts.Previous)
	boolean("timestamps", &opts.Timestamps)
	opts.SinceSeconds = integer("sinceSeconds", 1)
	opts.TailLines = integer("tailLines", 0)
	opts.LimitBytes = integer("limitBytes", 1)
	if v := q.Get("sinceTime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			errs = append(errs, field.Invalid(field.NewPath("sinceTime"), v, "must be an RFC 3339 time"))
		} else {
			opts.SinceTime = &metav1.Time{Time: t}
		}
	}
	if v := q.Get("stream"); v != "" {
		switch v {
		case corev1.LogStreamStdout, corev1.LogStreamStderr, corev1.LogStreamAll:
			opts.Stream = &v
		default:
			errs = append(errs, field.NotSupported(field.NewPath("stream"), v, []string{corev1.LogStreamStdout, corev1.LogStreamStderr, corev1.LogStreamAll}))
		}
	}
	return opts, errs
}

// stream carries exec, attach or port-forward: the upgraded connection is
// proxied byte for byte to the host pod's subresource, so SPDY and
// WebSocket, stdin, TTY resizes, exit codes and port streams pass
// unchanged; when either end closes, both connections are closed.
func (h *Handler) stream(subresource string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if !httpstream.IsUpgradeRequest(r) {
			h.refuse(w, r, apierrors.NewBadRequest("an upgrade (SPDY or WebSocket) is required"))
			return
		}
		query, errs := hostQuery(subresource, r.URL.Query())
		if len(errs) > 0 {
			h.refuse(w, r, apierrors.NewInvalid(schema.GroupKind{Kind: "Pod" + subresource + "Options"}, r.PathValue("pod"), errs))
			return
		}
		t, status := h.resolve(ctx, r, subresource != "portforward")
		if status != nil {
			h.refuse(w, r, status)
			return
		}
		if t.container != "" {
			query.Set("container", t.container)
		}
		location := *h.hostURL
		location.Path = strings.TrimSuffix(location.Path, "/") + "/api/v1/namespaces/" + h.Config.HostNamespace + "/pods/" + t.pod + "/" + subresource
		location.RawQuery = query.Encode()
		// Only the upgrade's own headers go on: the host request carries
		// podbridge's identity and nothing of the caller's (no
		// Authorization, no Impersonate-*).
		out := r.Clone(ctx)
		out.Header = http.Header{}
		for key, values := range r.Header {
			if upgradeHeader(key) {
				out.Header[key] = values
			}
		}
		release, ok := h.admit(w, r)
		if !ok {
			return
		}
		defer release()
		logf.FromContext(ctx).V(1).Info("Carried a stream to the host pod", "subresource", subresource, "pod", t.pod, "container", t.container)
		p := proxy.NewUpgradeAwareHandler(&location, h.upgrade, false, true, responder{h: h})
		p.UpgradeTransport = h.upgrade
		p.UseLocationHost = true
		requests.WithLabelValues(subresource, "carried").Inc()
		openStreams.WithLabelValues(subresource).Inc()
		defer openStreams.WithLabelValues(subresource).Dec()
		p.ServeHTTP(w, out)
	}
}

// upgradeHeader reports the headers a stream upgrade needs.
func upgradeHeader(key string) bool {
	switch http.CanonicalHeaderKey(key) {
	case "Connection", "Upgrade", "X-Stream-Protocol-Version", "Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Protocol", "Sec-Websocket-Extensions", "Origin":
		return true
	}
	return false
}

// hostQuery turns the kubelet's stream query (input/output/error/tty as
// "1", repeated command, comma-joined port) into the host apiserver's
// PodExecOptions, PodAttachOptions or PodPortForwardOptions.
func hostQuery(subresource string, q url.Values) (url.Values, field.ErrorList) {
	out := url.Values{}
	var errs field.ErrorList
	if subresource == "portforward" {
		for _, list := range q["port"] {
			for _, p := range strings.Split(list, ",") {
				port, err := strconv.ParseUint(strings.TrimSpace(p), 10, 16)
				if err != nil || port == 0 {
					errs = append(errs, field.Invalid(field.NewPath("port"), p, "must be a port number"))
					continue
				}
				out.Add("ports", strconv.FormatUint(port, 10))
			}
		}
		return out, errs
	}
	for kubelet, host := range map[string]string{"input": "stdin", "output": "stdout", "error": "stderr", "tty": "tty"} {
		if v := q.Get(kubelet); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, field.Invalid(field.NewPath(kubelet), v, "must be 1 or 0"))
				continue
			}
			out.Set(host, strconv.FormatBool(b))
		}
	}
	if subresource == "exec" {
		if len(q["command"]) == 0 {
			errs = append(errs, field.Required(field.NewPath("command"), "exec needs a command"))
		}
		for _, c := range q["command"] {
			out.Add("command", c)
		}
	}
	return out, errs
}

// responder answers errors met before the stream is established.
type responder struct{ h *Handler }

func (r responder) Error(w http.ResponseWriter, req *http.Request, err error) {
	r.h.refuse(w, req, apierrors.NewServiceUnavailable(fmt.Sprintf("reaching the host apiserver: %v", err)))
}

// refuse answers a Status, logged with the path it refused.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, err *apierrors.StatusError) {
	requests.WithLabelValues(subresourceOf(r.URL.Path), "refused").Inc()
	logf.FromContext(r.Context()).Info("Refused a kubelet API request", "path", r.URL.Path, "code", err.ErrStatus.Code, "reason", err.ErrStatus.Reason, "message", err.ErrStatus.Message)
	writeStatus(w, err.ErrStatus)
}

func writeStatus(w http.ResponseWriter, s metav1.Status) {
	s.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Status"}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(s.Code))
	_ = json.NewEncoder(w).Encode(s)
}

// subresourceOf names a kubelet path's subresource for metrics, from a
// fixed set (the path itself is the caller's).
func subresourceOf(path string) string {
	for prefix, name := range map[string]string{"/containerLogs/": "log", "/exec/": "exec", "/attach/": "attach", "/portForward/": "portforward"} {
		if strings.HasPrefix(path, prefix) {
			return name
		}
	}
	return "other"
}
