package admin

import (
	"reflect"
	"testing"
)

func TestTopTraps(t *testing.T) {
	counters := map[string]int64{
		"tarpit_seconds":             900,
		"trap_hits:a@example.org":    3,
		"trap_hits:b@example.org":    7,
		"trap_hits:c@example.org":    3,
		"trap_hits:zero@example.org": 0,
	}
	got := topTraps(counters, 2)
	want := []TrapHits{{"b@example.org", 7}, {"a@example.org", 3}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("topTraps = %v, want %v", got, want)
	}
	if got := topTraps(counters, 10); len(got) != 3 {
		t.Errorf("topTraps lists %d traps, want the 3 with hits", len(got))
	}
}
