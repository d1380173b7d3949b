package policy

// treatment is what podbridge does with one PodSpec field.
type treatment string

const (
	// Carried means copied to the host pod as the tenant wrote it.
	Carried treatment = "carried"
	// Translated means the host pod gets podbridge's value for it, derived from
	// the tenant's (or set by the host from what podbridge sends).
	Translated treatment = "translated"
	// Refused means a pod setting it is refused with an error naming it.
	Refused treatment = "refused"
	// AllowListed means carried when the platform's allow-list names the value,
	// refused otherwise.
	AllowListed treatment = "allow-listed"
	// Dropped means the host object gets none of it, and the rest is
	// carried (EndpointSlice fields).
	Dropped treatment = "dropped"
)

// fieldRule is the treatment of one PodSpec field and why.
type fieldRule struct {
	treatment treatment
	How       string
}

// podSpecFields classifies every field of corev1.PodSpec by its JSON name.
// A test fails when Kubernetes adds a field this table does not name, so
// no new field is dropped without a decision; docs/gate.md's table is
// checked against it.
var podSpecFields = map[string]fieldRule{
	"volumes":                       {Translated, "ConfigMap, Secret and token sources point at host copies; csi (allow-listed driver) and ephemeral (allow-listed storage class; no volumeName, selector, dataSource or reserved keys) pass the gate; persistentVolumeClaim points at the host claim of the claim of the same name in the pod's namespace; other types refused"},
	"initContainers":                {Translated, "ConfigMap and Secret references point at host copies; downward-API paths read the virtual values; with a subdomain and --hosts-image, podbridge-hosts comes first (the name is reserved)"},
	"containers":                    {Translated, "as initContainers; the kubelet's variables for the kubernetes Service (KUBERNETES_SERVICE_HOST, KUBERNETES_PORT_443_TCP_ADDR, ...) point at the virtual apiserver"},
	"ephemeralContainers":           {Translated, "as containers, added through pods/ephemeralcontainers after the gate"},
	"restartPolicy":                 {Carried, ""},
	"terminationGracePeriodSeconds": {Carried, ""},
	"activeDeadlineSeconds":         {Carried, "updates too"},
	"dnsPolicy":                     {Translated, "ClusterFirst resolves through the virtual cluster's DNS when configured"},
	"nodeSelector":                  {Translated, "the platform's enforced selector is added"},
	"serviceAccountName":            {Translated, "host pods run as the host service account; the virtual name is kept in an annotation for tokens and the downward API"},
	"serviceAccount":                {Translated, "deprecated alias of serviceAccountName"},
	"automountServiceAccountToken":  {Translated, "always false on the host; virtual tokens are projected by podbridge"},
	"nodeName":                      {Refused, "the host scheduler places pods"},
	"hostNetwork":                   {Refused, "the host's namespaces are shared by every tenant"},
	"hostPID":                       {Refused, "as hostNetwork"},
	"hostIPC":                       {Refused, "as hostNetwork"},
	"shareProcessNamespace":         {Carried, ""},
	"securityContext":               {Carried, "checked against the Pod Security level"},
	"imagePullSecrets":              {Translated, "point at host copies"},
	"hostname":                      {Translated, "defaults to the virtual pod's name"},
	"subdomain":                     {Carried, "must be a DNS label; with --hosts-image, /etc/hosts names the virtual namespace"},
	"affinity":                      {Translated, "pod (anti-)affinity scoped to this virtual cluster; non-empty namespaceSelector refused"},
	"schedulerName":                 {Refused, "anything but default-scheduler: the host's scheduler places pods"},
	"tolerations":                   {Translated, "the platform's enforced tolerations are added"},
	"hostAliases":                   {Carried, ""},
	"priorityClassName":             {AllowListed, "a class outside --allowed-priority-classes is stripped, so the host's default applies"},
	"priority":                      {Translated, "the host's Priority admission sets it from the host class"},
	"dnsConfig":                     {Translated, "merged after the virtual cluster's DNS settings"},
	"readinessGates":                {Translated, "kept on the virtual pod, which reports Ready only when they are met"},
	"runtimeClassName":              {AllowListed, "--allowed-runtime-classes"},
	"enableServiceLinks":            {Translated, "always false on the host: host Services' variables are not the tenant's"},
	"preemptionPolicy":              {Translated, "the host's Priority admission sets it from the host class"},
	"overhead":                      {Translated, "the host's RuntimeClass admission sets it from the host class"},
	"topologySpreadConstraints":     {Translated, "label selectors scoped to this virtual cluster and namespace"},
	"setHostnameAsFQDN":             {Carried, ""},
	"os":                            {Carried, ""},
	"hostUsers":                     {Carried, "checked against the Pod Security level"},
	"schedulingGates":               {Translated, "carried; podbridge's own gate added while the pod waits for its virtual UID and tokens; podbridge.io/ gates refused"},
	"resourceClaims":                {Refused, "podbridge does not carry dynamic resource claims"},
	"resources":                     {Carried, "resizes too"},
	"hostnameOverride":              {Refused, "podbridge sets the host pod's hostname"},
	"schedulingGroup":               {Refused, "podbridge does not carry workload scheduling groups"},
	"evictionResponders":            {Refused, "podbridge does not carry eviction responders"},
}
