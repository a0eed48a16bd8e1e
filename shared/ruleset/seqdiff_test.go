package ruleset

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"
)

// lcsLen is the textbook O(nm) longest common subsequence length.
func lcsLen(a, b []string) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for i := range a {
		for j := range b {
			if a[i] == b[j] {
				cur[j+1] = prev[j] + 1
			} else {
				cur[j+1] = max(prev[j+1], cur[j])
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// checkScript fails the test unless edits turn a into b: removals name indices of a and
// additions indices of b, each at most once and in increasing order, and what a keeps
// is, in order, what b keeps.
func checkScript(t testing.TB, a, b []string, edits []Edit) {
	t.Helper()
	removed := make([]bool, len(a))
	added := make([]bool, len(b))
	lastOld, lastNew := -1, -1
	for _, e := range edits {
		if e.Added {
			if e.NewIndex <= lastNew || e.NewIndex >= len(b) {
				t.Fatalf("addition at %d out of order or range (len %d): %v",
					e.NewIndex, len(b), brief(edits))
			}
			lastNew = e.NewIndex
			added[e.NewIndex] = true
		} else {
			if e.OldIndex <= lastOld || e.OldIndex >= len(a) {
				t.Fatalf("removal at %d out of order or range (len %d): %v",
					e.OldIndex, len(a), brief(edits))
			}
			lastOld = e.OldIndex
			removed[e.OldIndex] = true
		}
	}
	var keptA, keptB []string
	for i, s := range a {
		if !removed[i] {
			keptA = append(keptA, s)
		}
	}
	for j, s := range b {
		if !added[j] {
			keptB = append(keptB, s)
		}
	}
	if !slices.Equal(keptA, keptB) {
		t.Fatalf("script does not turn a into b:\na %s\nb %s\nedits %s", brief(a), brief(b),
			brief(edits))
	}
}

// brief formats a slice for a failure message, cut short when long.
func brief[T any](xs []T) string {
	if len(xs) > 12 {
		return fmt.Sprintf("%v … (%d in all)", xs[:12], len(xs))
	}
	return fmt.Sprintf("%v", xs)
}

// checkMinimal fails the test unless edits is a shortest edit script.
func checkMinimal(t testing.TB, a, b []string, edits []Edit) {
	t.Helper()
	if want := len(a) + len(b) - 2*lcsLen(a, b); len(edits) != want {
		t.Fatalf("%d edits, shortest script has %d:\na %s\nb %s\nedits %s",
			len(edits), want, brief(a), brief(b), brief(edits))
	}
}

// hasDuplicates reports whether some value occurs twice in xs.
func hasDuplicates(xs []string) bool {
	seen := map[string]bool{}
	for _, s := range xs {
		if seen[s] {
			return true
		}
		seen[s] = true
	}
	return false
}

// checkFallback checks the multiset fallback: the script is valid, and when no value
// repeats inside a or inside b (so which occurrence is kept is never a choice) it is also
// shortest, so no unchanged line is reported as removed and added again.
func checkFallback(t testing.TB, a, b []string, edits []Edit) {
	t.Helper()
	checkScript(t, a, b, edits)
	if !hasDuplicates(a) && !hasDuplicates(b) {
		checkMinimal(t, a, b, edits)
	}
}

// unique keeps the first occurrence of each value.
func unique(xs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range xs {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func split(s string) []string {
	var out []string
	for _, r := range s {
		out = append(out, string(r))
	}
	return out
}

func TestDiffSequence(t *testing.T) {
	tests := []struct {
		a, b string
		want []Edit // nil: only check that the script is valid and shortest
	}{
		{"", "", []Edit{}},
		{"abc", "abc", []Edit{}},
		{"", "ab", []Edit{{Added: true, NewIndex: 0}, {Added: true, NewIndex: 1}}},
		{"ab", "", []Edit{{OldIndex: 0}, {OldIndex: 1}}},
		{"abc", "xabc", []Edit{{Added: true, NewIndex: 0}}},
		{"abc", "abxc", []Edit{{Added: true, NewIndex: 2}}},
		{"abc", "abcx", []Edit{{Added: true, NewIndex: 3}}},
		{"abc", "ac", []Edit{{OldIndex: 1}}},
		{"abc", "axc", []Edit{{OldIndex: 1}, {Added: true, NewIndex: 1}}},
		// Duplicates.
		{"aaa", "aa", nil},
		{"aa", "aaaa", nil},
		{"aba", "bab", nil},
		{"abab", "baba", nil},
		{"abcabba", "cbabac", nil},
		{"aabbcc", "ccbbaa", nil},
		{"xaxbxcx", "xxx", nil},
		{"ab", "ba", nil},
		{"aaaabaaaa", "aaaacaaaa", []Edit{{OldIndex: 4}, {Added: true, NewIndex: 4}}},
	}
	for _, tt := range tests {
		a, b := split(tt.a), split(tt.b)
		got := DiffSequence(a, b)
		checkScript(t, a, b, got)
		checkMinimal(t, a, b, got)
		if tt.want == nil {
			continue
		}
		var kinds []string
		for _, e := range got {
			if e.Added {
				kinds = append(kinds, fmt.Sprintf("+%d", e.NewIndex))
			} else {
				kinds = append(kinds, fmt.Sprintf("-%d", e.OldIndex))
			}
		}
		var want []string
		for _, e := range tt.want {
			if e.Added {
				want = append(want, fmt.Sprintf("+%d", e.NewIndex))
			} else {
				want = append(want, fmt.Sprintf("-%d", e.OldIndex))
			}
		}
		if !slices.Equal(kinds, want) {
			t.Errorf("DiffSequence(%q, %q) = %v, want %v", tt.a, tt.b, kinds, want)
		}
	}
}

func TestDiffSequenceRandomSmall(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	gen := func() []string {
		out := make([]string, r.IntN(30))
		for i := range out {
			out[i] = strconv.Itoa(r.IntN(4))
		}
		return out
	}
	for range 2000 {
		a, b := gen(), gen()
		got := DiffSequence(a, b)
		checkScript(t, a, b, got)
		checkMinimal(t, a, b, got)
	}
}

// lines returns n distinct rule-like lines.
func lines(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + " " + strconv.Itoa(i) + " accept"
	}
	return out
}

// TestDiffSequenceLarge diffs 100k rules, once with a few scattered edits and once with
// more edits than maxEditDistance: the scripts must be exact, and each diff must take well
// under a second (a quadratic algorithm takes minutes).
func TestDiffSequenceLarge(t *testing.T) {
	a := lines("ip saddr 10.0.0.1 tcp dport", 100_000)
	few := slices.Clone(a)
	few = slices.Delete(few, 70_000, 70_003)                     // three removed
	few = slices.Insert(few, 50_000, "inserted 1", "inserted 2") // two added
	few[10] = "changed 10"                                       // one replaced
	few = slices.Insert(few, len(few)-1, "before last")          // one added near the end
	few = append([]string{"first"}, few...)                      // one added at the start
	many := slices.Clone(a)
	for i := 0; i < len(many); i += 50 {
		many[i] = "changed " + strconv.Itoa(i) // 2000 replaced
	}
	for _, tt := range []struct {
		name  string
		b     []string
		edits int
	}{
		{"few edits", few, 3 + 2 + 2 + 1 + 1},
		{"beyond maxEditDistance", many, 2 * 2000},
	} {
		start := time.Now()
		got := DiffSequence(a, tt.b)
		elapsed := time.Since(start)
		checkScript(t, a, tt.b, got)
		if len(got) != tt.edits {
			t.Errorf("%s: %d edits, want %d", tt.name, len(got), tt.edits)
		}
		if elapsed > 2*time.Second {
			t.Errorf("%s: diff of 100k lines took %v", tt.name, elapsed)
		}
	}
}

// TestDiffSequenceBeyondMaxDistance covers the fallback taken when the shortest script is
// longer than maxEditDistance: the script must still turn a into b.
func TestDiffSequenceBeyondMaxDistance(t *testing.T) {
	n := 3000
	base := lines("tcp dport", n)
	everyOther := func() []string {
		var out []string
		for i, s := range base {
			if i%2 == 0 {
				out = append(out, s)
			} else {
				out = append(out, "new "+s)
			}
		}
		return out
	}
	rotated := append(slices.Clone(base[n/2:]), base[:n/2]...)
	reversed := slices.Clone(base)
	slices.Reverse(reversed)
	withDups := func() []string {
		out := make([]string, 0, 2*n)
		for i := range n {
			out = append(out, "drop", base[i])
		}
		return out
	}
	tests := []struct {
		name string
		a, b []string
	}{
		{"every other line replaced", base, everyOther()},
		{"all replaced", base, lines("udp dport", n)},
		{"rotated", base, rotated},
		{"reversed", base, reversed},
		{"duplicates added", base, withDups()},
		{"duplicates removed", withDups(), base},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := len(tt.a) + len(tt.b) - 2*lcsLen(tt.a, tt.b); d <= maxEditDistance {
				t.Fatalf("distance %d does not exceed maxEditDistance", d)
			}
			got := DiffSequence(tt.a, tt.b)
			checkScript(t, tt.a, tt.b, got)
			// In each of these cases the occurrences kept are unambiguous, so even the
			// fallback finds a shortest script.
			checkMinimal(t, tt.a, tt.b, got)
		})
	}
}

func TestMultisetDiffFallback(t *testing.T) {
	for _, tt := range []struct{ a, b string }{
		{"", ""}, {"abc", ""}, {"", "abc"}, {"abc", "abc"}, {"ab", "ba"}, {"abc", "cab"},
		{"aab", "aba"}, {"abcabc", "cbacba"}, {"aaa", "a"}, {"abxcd", "aybcd"},
	} {
		a, b := split(tt.a), split(tt.b)
		checkFallback(t, a, b, multisetDiff(a, b))
	}
}

// FuzzDiffSequence checks DiffSequence against the O(nm) reference on small inputs over a
// small alphabet (so that duplicates are common), and the fallback on the same inputs.
func FuzzDiffSequence(f *testing.F) {
	f.Add([]byte{3, 0, 1, 2, 0, 1, 2})
	f.Add([]byte{0})
	f.Add([]byte{4, 1, 1, 1, 1, 1, 1})
	f.Add([]byte("\x05abcabbacbaba"))
	f.Add([]byte("\x08aaaabaaaaaaaacaaaa"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 || len(data) > 400 {
			return
		}
		cut := min(int(data[0]), len(data)-1)
		conv := func(bs []byte) []string {
			out := make([]string, len(bs))
			for i, c := range bs {
				out[i] = string(rune('a' + c%5))
			}
			return out
		}
		a, b := conv(data[1:1+cut]), conv(data[1+cut:])
		got := DiffSequence(a, b)
		checkScript(t, a, b, got)
		checkMinimal(t, a, b, got)

		checkFallback(t, a, b, multisetDiff(a, b))
		// Without repeated values the fallback is exact: fuzz that case too.
		checkFallback(t, unique(a), unique(b), multisetDiff(unique(a), unique(b)))
	})
}
