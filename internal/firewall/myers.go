package firewall

import "context"

// commonPairs returns the index pairs (i, j) of a longest common
// subsequence of a and b, in order, by Myers' O((N+M)·D) algorithm in its
// linear-space form (E. Myers, "An O(ND) Difference Algorithm and Its
// Variations", 1986, section 4b): D is the number of differences, so
// re-planning an unchanged or slightly changed ruleset takes linear time
// where a table of all pairs took N·M. It stops with ctx's error when ctx
// ends.
func commonPairs(ctx context.Context, a, b []int) ([][2]int, error) {
	n := len(a) + len(b) + 2
	m := &myers{ctx: ctx, a: a, b: b, vf: make([]int, 2*n+1), vb: make([]int, 2*n+1), off: n}
	m.compare(0, len(a), 0, len(b))
	return m.pairs, m.err
}

type myers struct {
	ctx    context.Context
	a, b   []int
	vf, vb []int // furthest x per diagonal k, at index k+off: forward, and backward in reversed coordinates
	off    int
	pairs  [][2]int
	steps  int
	err    error
}

// compare adds the common pairs of a[a0:a1] and b[b0:b1].
func (m *myers) compare(a0, a1, b0, b1 int) {
	for a0 < a1 && b0 < b1 && m.a[a0] == m.b[b0] {
		m.pairs = append(m.pairs, [2]int{a0, b0})
		a0, b0 = a0+1, b0+1
	}
	suffix := 0
	for a1 > a0 && b1 > b0 && m.a[a1-1] == m.b[b1-1] {
		a1, b1, suffix = a1-1, b1-1, suffix+1
	}
	if a0 < a1 && b0 < b1 && m.err == nil {
		x, y, u, v := m.middleSnake(a0, a1, b0, b1)
		if m.err != nil {
			return
		}
		m.compare(a0, a0+x, b0, b0+y)
		for i := range u - x {
			m.pairs = append(m.pairs, [2]int{a0 + x + i, b0 + y + i})
		}
		m.compare(a0+u, a1, b0+v, b1)
	}
	for i := range suffix {
		m.pairs = append(m.pairs, [2]int{a1 + i, b1 + i})
	}
}

// middleSnake finds the middle snake of an optimal path through
// a[a0:a1] x b[b0:b1] (both non-empty, their first and their last
// elements different): it goes from (x, y) to (u, v), relative to a0, b0.
func (m *myers) middleSnake(a0, a1, b0, b1 int) (x, y, u, v int) {
	a, b := m.a[a0:a1], m.b[b0:b1]
	N, M := len(a), len(b)
	delta := N - M
	odd := delta&1 != 0
	vf, vb, off := m.vf, m.vb, m.off
	vf[off+1], vb[off+1] = 0, 0
	for d := 0; d <= (N+M+1)/2; d++ {
		if m.steps += d; m.steps > 1<<16 {
			m.steps = 0
			if m.err = m.ctx.Err(); m.err != nil {
				return 0, 0, 0, 0
			}
		}
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && vf[off+k-1] < vf[off+k+1]) {
				x = vf[off+k+1]
			} else {
				x = vf[off+k-1] + 1
			}
			y := x - k
			sx, sy := x, y
			for x < N && y < M && a[x] == b[y] {
				x, y = x+1, y+1
			}
			vf[off+k] = x
			// The backward path on the same diagonal, if it has d-1 steps.
			if kb := delta - k; odd && kb >= -(d-1) && kb <= d-1 && x+vb[off+kb] >= N {
				return sx, sy, x, y
			}
		}
		for kb := -d; kb <= d; kb += 2 {
			var x int
			if kb == -d || (kb != d && vb[off+kb-1] < vb[off+kb+1]) {
				x = vb[off+kb+1]
			} else {
				x = vb[off+kb-1] + 1
			}
			y := x - kb
			sx, sy := x, y
			for x < N && y < M && a[N-1-x] == b[M-1-y] {
				x, y = x+1, y+1
			}
			vb[off+kb] = x
			if k := delta - kb; !odd && k >= -d && k <= d && x+vf[off+k] >= N {
				return N - x, M - y, N - sx, M - sy
			}
		}
	}
	panic("firewall: no middle snake") // unreachable: some path has at most N+M steps
}
