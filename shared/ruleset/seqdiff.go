package ruleset

import (
	"cmp"
	"slices"
)

// Edit is one step of a sequence diff: an element of the new sequence that was added
// (NewIndex valid) or an element of the old sequence that was removed (OldIndex valid).
type Edit struct {
	Added    bool
	OldIndex int
	NewIndex int
}

// maxEditDistance bounds the work (and the O(D²) memory) of the shortest-edit search.
// Beyond it, DiffSequence falls back to a multiset difference: still a correct edit
// script (lines that moved are removed and added again), but not always the shortest.
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
// adds the surplus occurrences of each element of b (the last ones). The occurrences both
// sides keep are paired in order (the k-th kept x of a with the k-th kept x of b); pairs
// off one longest increasing run of those pairs have moved, and are removed and added
// again, so that the script still turns a into b. O(n log n).
func multisetDiff(a, b []string) []Edit {
	surplus := make(map[string]int, len(a))
	for _, s := range a {
		surplus[s]++
	}
	for _, s := range b {
		surplus[s]--
	}
	// Walk from the end so that the last occurrences are the ones reported.
	removed := make([]bool, len(a))
	for i := len(a) - 1; i >= 0; i-- {
		if surplus[a[i]] > 0 {
			surplus[a[i]]--
			removed[i] = true
		}
	}
	added := make([]bool, len(b))
	for j := len(b) - 1; j >= 0; j-- {
		if surplus[b[j]] < 0 {
			surplus[b[j]]++
			added[j] = true
		}
	}
	kept := make(map[string][]int, len(b))
	for j, s := range b {
		if !added[j] {
			kept[s] = append(kept[s], j)
		}
	}
	var pairA, pairB []int
	for i, s := range a {
		if !removed[i] {
			pairA, pairB = append(pairA, i), append(pairB, kept[s][0])
			kept[s] = kept[s][1:]
		}
	}
	for k, on := range increasingRun(pairB) {
		if !on {
			removed[pairA[k]], added[pairB[k]] = true, true
		}
	}
	var out []Edit
	for i, r := range removed {
		if r {
			out = append(out, Edit{OldIndex: i})
		}
	}
	for j, ad := range added {
		if ad {
			out = append(out, Edit{Added: true, NewIndex: j})
		}
	}
	return out
}

// increasingRun marks the entries of p (distinct values) that are on one longest
// increasing subsequence of p.
func increasingRun(p []int) []bool {
	tails := []int{} // tails[l]: index of the smallest last value of a run of length l+1
	prev := make([]int, len(p))
	for k, v := range p {
		l, _ := slices.BinarySearchFunc(tails, v, func(t, v int) int {
			return cmp.Compare(p[t], v)
		})
		prev[k] = -1
		if l > 0 {
			prev[k] = tails[l-1]
		}
		if l == len(tails) {
			tails = append(tails, k)
		} else {
			tails[l] = k
		}
	}
	on := make([]bool, len(p))
	if len(tails) > 0 {
		for k := tails[len(tails)-1]; k >= 0; k = prev[k] {
			on[k] = true
		}
	}
	return on
}
