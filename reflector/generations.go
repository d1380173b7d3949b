package reflector

// generations remembers values by key, in two generations of at most limit
// entries each: a full current generation becomes the previous one (the
// one before is forgotten), and a key found in the previous generation
// moves back to the current. What the pods in the caches keep using stays
// remembered, what only pods long gone used is forgotten, and the memory
// stays bounded whatever the pods hold. Callers guard it.
type generations[K comparable, V any] struct {
	limit             int
	current, previous map[K]V
}

func newGenerations[K comparable, V any](limit int) generations[K, V] {
	return generations[K, V]{limit: limit, current: map[K]V{}}
}

// get returns the value remembered under k.
func (g *generations[K, V]) get(k K) (V, bool) {
	if v, ok := g.current[k]; ok {
		return v, true
	}
	v, ok := g.previous[k]
	if ok {
		g.put(k, v)
	}
	return v, ok
}

// put remembers v under k.
func (g *generations[K, V]) put(k K, v V) {
	if len(g.current) >= g.limit {
		g.previous, g.current = g.current, map[K]V{}
	}
	g.current[k] = v
}

// len is the number of keys remembered.
func (g *generations[K, V]) len() int { return len(g.current) + len(g.previous) }
