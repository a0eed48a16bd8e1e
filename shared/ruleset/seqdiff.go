package ruleset

// Edit is one step of a sequence diff: an element of the new sequence that was added
// (NewIndex valid) or an element of the old sequence that was removed (OldIndex valid).
type Edit struct {
	Added    bool
	OldIndex int
	NewIndex int
}

// maxEditDistance bounds the work (and the O(D²) memory) of the shortest-edit search.
// Beyond it, DiffSequence falls back to a multiset difference: still a correct edit
// script that never reports an unchanged element, but not always the shortest.
const maxEditDistance = 1024

// DiffSequence returns a shortest edit script from a to b (Myers' O(ND) algorithm after
// trimming the common prefix and suffix): removals and additions, ordered by position.
func DiffSequence(a, b []string) []Edit {
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	a, b = a[pre:len(a)-suf], b[pre:len(b)-suf]
	edits := myers(a, b)
	for i := range edits {
		edits[i].OldIndex += pre
		edits[i].NewIndex += pre
	}
	return edits
}

func myers(a, b []string) []Edit {
	n, m := len(a), len(b)
	if n == 0 && m == 0 {
		return nil
	}
	maxD := n + m
	if maxD > maxEditDistance {
		maxD = maxEditDistance
	}
	off := maxD + 1
	v := make([]int, 2*maxD+3)
	// trace[d] holds v[-d-1 .. d+1] as it was before round d.
	var trace [][]int
	found := -1
	for d := 0; d <= maxD && found < 0; d++ {
		trace = append(trace, append([]int(nil), v[off-d-1:off+d+2]...))
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
				x = v[off+k+1] // down: insertion
			} else {
				x = v[off+k-1] + 1 // right: deletion
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x++
				y++
			}
			v[off+k] = x
			if x >= n && y >= m {
				found = d
				break
			}
		}
	}
	if found < 0 {
		return multisetDiff(a, b)
	}
	// Walk the trace backwards to recover the path.
	var rev []Edit
	x, y := n, m
	for d := found; d > 0; d-- {
		vp, vo := trace[d], d+1
		k := x - y
		var pk int
		if k == -d || (k != d && vp[vo+k-1] < vp[vo+k+1]) {
			pk = k + 1
		} else {
			pk = k - 1
		}
		px := vp[vo+pk]
		py := px - pk
		for x > px && y > py {
			x--
			y--
		}
		if pk == k+1 {
			rev = append(rev, Edit{Added: true, OldIndex: x, NewIndex: py})
		} else {
			rev = append(rev, Edit{OldIndex: px, NewIndex: y})
		}
		x, y = px, py
	}
	out := make([]Edit, len(rev))
	for i := range rev {
		out[i] = rev[len(rev)-1-i]
	}
	return out
}

// multisetDiff removes the surplus occurrences of each element of a (the last ones) and
// adds the surplus occurrences of each element of b (the last ones).
func multisetDiff(a, b []string) []Edit {
	count := make(map[string]int, len(a))
	for _, s := range a {
		count[s]++
	}
	for _, s := range b {
		count[s]--
	}
	// Walk from the end so that the last occurrences are the ones reported.
	var removed, added []Edit
	surplus := make(map[string]int, len(count))
	for s, c := range count {
		surplus[s] = c
	}
	for i := len(a) - 1; i >= 0; i-- {
		if surplus[a[i]] > 0 {
			surplus[a[i]]--
			removed = append(removed, Edit{OldIndex: i})
		}
	}
	for j := len(b) - 1; j >= 0; j-- {
		if count[b[j]] < 0 {
			count[b[j]]++
			added = append(added, Edit{Added: true, NewIndex: j})
		}
	}
	out := make([]Edit, 0, len(removed)+len(added))
	for i := len(removed) - 1; i >= 0; i-- {
		out = append(out, removed[i])
	}
	for j := len(added) - 1; j >= 0; j-- {
		out = append(out, added[j])
	}
	return out
}
