package incident

import (
	"testing"
	"time"
)

func TestSeries_Coarsens(t *testing.T) {
	base := time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		span   time.Duration // one count per second over span
		max    int
		step   time.Duration
		points int
	}{
		{"seconds", 10 * time.Second, 100, time.Second, 10},
		{"minutes past the bound", 10 * time.Minute, 100, time.Minute, 10},
		{"hours past the bound", 3 * time.Hour, 100, time.Hour, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSeries[string](tt.max)
			for d := time.Duration(0); d < tt.span; d += time.Second {
				s.Add(base.Add(d), "", 1)
			}
			pts := s.Points()
			if s.Step() != tt.step || len(pts) != tt.points {
				t.Fatalf("step %s, %d points; want %s, %d", s.Step(), len(pts), tt.step, tt.points)
			}
			total := 0
			for i, p := range pts {
				total += p.N
				if want := base.Add(time.Duration(i) * tt.step); !p.Time.Equal(want) {
					t.Errorf("point %d at %s, want %s", i, p.Time, want)
				}
			}
			if total != int(tt.span/time.Second) {
				t.Errorf("total %d, want %d", total, int(tt.span/time.Second))
			}
		})
	}
}

func TestSeries_MergeTakesTheCoarserStep(t *testing.T) {
	base := time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)
	fine, coarse := NewSeries[int](100), NewSeries[int](2)
	fine.Add(base.Add(30*time.Second), 1, 1)
	for i := range 3 {
		coarse.Add(base.Add(time.Duration(i)*time.Minute), 2, 1)
	}
	fine.Merge(coarse)
	pts := fine.Points()
	if fine.Step() != time.Minute || len(pts) != 4 || pts[0].Key != 1 || pts[1].Key != 2 || !pts[1].Time.Equal(base) {
		t.Errorf("step %s points %+v", fine.Step(), pts)
	}
}
