package translate

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// HostRuntimeClass is a RuntimeClass of the host that the platform lets
// tenants use (Config.RuntimeClasses), with the handler it names.
type HostRuntimeClass struct {
	Name    string
	Handler string
}

// RuntimeClassOf decides which host RuntimeClass runs a pod whose tenant
// RuntimeClass is named name and names handler (the tenant's own object in
// its virtual cluster). A tenant makes RuntimeClasses as in any cluster; only
// the classes the platform allows run its pods, chosen here:
//
//   - an allowed class of the same name: the tenant asked for it by name;
//   - else the one allowed class with the same handler: the runtime the
//     tenant's class asks for, as the platform configured it (its overhead
//     and scheduling are the host class's, set by the host's RuntimeClass
//     admission);
//   - else the pod is refused, naming the allowed classes and the flag.
//     Two allowed classes with the handler are refused as ambiguous rather
//     than guessed between: they differ in what the platform set on them.
//
// allowed is what the host holds of the allowed classes; handler is read
// only when the name does not decide (the caller may pass "" otherwise).
func RuntimeClassOf(path *field.Path, name, handler string, allowed []HostRuntimeClass) (string, *field.Error) {
	if slices.ContainsFunc(allowed, func(c HostRuntimeClass) bool { return c.Name == name }) {
		return name, nil
	}
	var matches []string
	for _, c := range allowed {
		if c.Handler == handler {
			matches = append(matches, c.Name)
		}
	}
	slices.Sort(matches)
	switch len(matches) {
	case 1:
		return matches[0], nil
	case 0:
		return "", field.Invalid(path, name, fmt.Sprintf("its handler %q is not the handler of a RuntimeClass the platform allows on the host (platform flag --allowed-runtime-classes); allowed: %s",
			handler, describeRuntimeClasses(allowed)))
	default:
		return "", field.Invalid(path, name, fmt.Sprintf("its handler %q is the handler of several RuntimeClasses allowed on the host (%s): name one of them",
			handler, strings.Join(matches, ", ")))
	}
}

// NeedsRuntimeClassHandler reports whether RuntimeClassOf needs the tenant
// class's handler: the name alone decides for an allowed class's name.
func NeedsRuntimeClassHandler(name string, allowed []string) bool {
	return !slices.Contains(allowed, name)
}

func describeRuntimeClasses(classes []HostRuntimeClass) string {
	if len(classes) == 0 {
		return "none"
	}
	described := make([]string, len(classes))
	for i, c := range classes {
		described[i] = fmt.Sprintf("%s (handler %s)", c.Name, c.Handler)
	}
	slices.Sort(described)
	return strings.Join(described, ", ")
}
