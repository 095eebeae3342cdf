package detect

import (
	"math/rand/v2"
	"testing"

	"github.com/vigil-k8s/vigil/ingest"
)

// TestKeySet_LikeDedup runs the same operations on a keySet and an
// ingest.Dedup without a window: they must answer alike, through
// generations, deletions and collisions.
func TestKeySet_LikeDedup(t *testing.T) {
	for _, maxKeys := range []int{2, 10, 1000} {
		r := rand.New(rand.NewPCG(1, uint64(maxKeys)))
		s, d := newKeySet(maxKeys), ingest.NewDedup[uint64](maxKeys, 0)
		for i := range 200_000 {
			// Few distinct keys, so that they repeat, with colliding low
			// and high bits, and the zero key now and then.
			key := r.Uint64N(uint64(3*maxKeys)) << (r.IntN(3) * 20)
			switch r.IntN(5) {
			case 0:
				s.Forget(key)
				d.Forget(key)
			case 1:
				// Has is Seen, then Forget when it was not seen.
				want := d.Seen(key)
				if !want {
					d.Forget(key)
				}
				if got := s.Has(key); got != want {
					t.Fatalf("max %d, op %d: Has(%d) = %v, Dedup %v", maxKeys, i, key, got, want)
				}
			default:
				if got, want := s.Seen(key), d.Seen(key); got != want {
					t.Fatalf("max %d, op %d: Seen(%d) = %v, Dedup %v", maxKeys, i, key, got, want)
				}
			}
			if s.Len() != d.Len() {
				t.Fatalf("max %d, op %d: Len %d, Dedup %d", maxKeys, i, s.Len(), d.Len())
			}
		}
	}
}
