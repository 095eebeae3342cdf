package detect

import (
	"math"
	"math/bits"
)

// A sketch estimates the distinct values of a key past the exactness cap:
// a HyperLogLog of 2^sketchP registers per time bucket, sketchBuckets
// buckets covering the window. Its standard error is 1.04/sqrt(2^sketchP)
// (6.5%), and a value counts for up to within/(sketchBuckets-1) longer than
// the window (see docs/rules.md). It takes 2 KiB, only for keys past the
// cap.
const (
	sketchP       = 8
	sketchRegs    = 1 << sketchP
	sketchBuckets = 8
)

type sketch struct {
	// Head is the bucket index of the newest bucket; Regs[i] the registers
	// of bucket i (ring position).
	Head int64                            `json:"head"`
	Regs [sketchBuckets][sketchRegs]uint8 `json:"regs"`
}

func (s *sketch) add(h uint64, t int64, spec *WindowSpec) {
	b := floorDiv(t, bucketWidth(spec, sketchBuckets))
	if b > s.Head {
		for i := s.Head + 1; i <= min(b, s.Head+sketchBuckets); i++ {
			clear(s.Regs[ringIndex(i, sketchBuckets)][:])
		}
		s.Head = b
	}
	if b <= s.Head-sketchBuckets {
		return
	}
	reg := h >> (64 - sketchP)
	rho := uint8(bits.LeadingZeros64(h<<sketchP|1<<(sketchP-1)) + 1)
	r := &s.Regs[ringIndex(b, sketchBuckets)][reg]
	*r = max(*r, rho)
}

// estimate is the number of distinct values in the buckets of the window
// that ends at now.
func (s *sketch) estimate(now int64, spec *WindowSpec) int {
	head := floorDiv(now, bucketWidth(spec, sketchBuckets))
	var merged [sketchRegs]uint8
	for b := head - sketchBuckets + 1; b <= min(head, s.Head); b++ {
		if b <= s.Head-sketchBuckets {
			continue
		}
		for i, r := range s.Regs[ringIndex(b, sketchBuckets)] {
			merged[i] = max(merged[i], r)
		}
	}
	sum, zeros := 0.0, 0
	for _, r := range merged {
		sum += math.Ldexp(1, -int(r))
		if r == 0 {
			zeros++
		}
	}
	const m = float64(sketchRegs)
	e := 0.7213 / (1 + 1.079/m) * m * m / sum
	if e <= 2.5*m && zeros > 0 {
		e = m * math.Log(m/float64(zeros))
	}
	return int(math.Round(e))
}

// empty reports whether no bucket of the sketch is in the window ending at
// now.
func (s *sketch) empty(now int64, spec *WindowSpec) bool {
	return s.Head <= floorDiv(now, bucketWidth(spec, sketchBuckets))-sketchBuckets
}
