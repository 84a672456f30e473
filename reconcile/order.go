package reconcile

import (
	"sort"

	"github.com/capstan-dev/capstan/resource"
)

// phase is a step of the apply order. Objects are created and changed dependencies
// first (a service needs its networks, secrets and configs; a listener its VServer
// group) and deleted in the reverse order.
type phase int

const (
	phaseNetworks phase = iota
	phaseSecrets
	phaseConfigs
	phaseServices
	phaseVServerGroups
	phaseListeners
	phaseOther // kinds capstan does not order specially
	phaseDeleteOther
	phaseDeleteListeners
	phaseDeleteVServerGroups
	phaseDeleteServices
	phaseDeleteConfigs
	phaseDeleteSecrets
	phaseDeleteNetworks
)

func phaseOf(c Change) phase {
	del := c.Action == Delete
	switch c.Key.Kind {
	case resource.KindNetwork:
		return pick(del, phaseNetworks, phaseDeleteNetworks)
	case resource.KindSecret:
		return pick(del, phaseSecrets, phaseDeleteSecrets)
	case resource.KindConfig:
		return pick(del, phaseConfigs, phaseDeleteConfigs)
	case resource.KindService:
		return pick(del, phaseServices, phaseDeleteServices)
	case resource.KindVServerGroup:
		return pick(del, phaseVServerGroups, phaseDeleteVServerGroups)
	case resource.KindListener:
		return pick(del, phaseListeners, phaseDeleteListeners)
	}
	return pick(del, phaseOther, phaseDeleteOther)
}

func pick(del bool, create, remove phase) phase {
	if del {
		return remove
	}
	return create
}

// sortChanges puts changes in apply order: by phase, then, among service creates and
// updates, by the stack order (dependencies first), then by Key.
func sortChanges(changes []Change, stackRank map[string]int) {
	rank := func(c Change) int {
		if phaseOf(c) != phaseServices {
			return 0
		}
		if r, ok := stackRank[changeStack(c)]; ok {
			return r
		}
		return len(stackRank) // services of no known stack go last
	}
	sort.SliceStable(changes, func(i, j int) bool {
		a, b := changes[i], changes[j]
		if pa, pb := phaseOf(a), phaseOf(b); pa != pb {
			return pa < pb
		}
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra < rb
		}
		return a.Key.Less(b.Key)
	})
}

// orderStacks sorts stacks so that each comes after the stacks it depends on; among
// stacks free to go, by name. Dependencies on stacks that are not in the set are
// ignored (manifest validation reports them). A cycle is a *CycleError.
func orderStacks(stacks map[string]resource.Stack) (order []string, deps map[string][]string, err error) {
	deps = map[string][]string{}
	indegree := map[string]int{}
	dependents := map[string][]string{}
	for name, st := range stacks {
		indegree[name] += 0
		seen := map[string]bool{}
		for _, d := range st.DependsOn {
			if _, ok := stacks[d]; !ok || seen[d] {
				continue
			}
			seen[d] = true
			deps[name] = append(deps[name], d)
			indegree[name]++
			dependents[d] = append(dependents[d], name)
		}
		sort.Strings(deps[name])
	}
	var ready []string
	for name, n := range indegree {
		if n == 0 {
			ready = append(ready, name)
		}
	}
	sort.Strings(ready)
	for len(ready) > 0 {
		name := ready[0]
		ready = ready[1:]
		order = append(order, name)
		for _, dep := range dependents[name] {
			if indegree[dep]--; indegree[dep] == 0 {
				ready = append(ready, dep)
				sort.Strings(ready)
			}
		}
	}
	if len(order) < len(stacks) {
		return nil, nil, &CycleError{Cycle: findCycle(deps, indegree)}
	}
	return order, deps, nil
}

// findCycle follows dependencies among the stacks left unordered until one repeats.
func findCycle(deps map[string][]string, indegree map[string]int) []string {
	var start string
	for name, n := range indegree {
		if n > 0 && (start == "" || name < start) {
			start = name
		}
	}
	var path []string
	at := map[string]int{}
	for cur := start; ; {
		if i, ok := at[cur]; ok {
			return append(path[i:], cur)
		}
		at[cur] = len(path)
		path = append(path, cur)
		next := ""
		for _, d := range deps[cur] {
			if indegree[d] > 0 {
				next = d
				break
			}
		}
		if next == "" {
			return path // unreachable: every stack left has an unordered dependency
		}
		cur = next
	}
}
