package e2e
import ("testing";"time")
func TestHarnessTiming(t *testing.T) {
	t0 := time.Now()
	b := StartBackend(t, true, "alice@example.test")
	t.Log("backend", time.Since(t0)); t0 = time.Now()
	s := StartSender(t, b.Addr, "127.0.0.20")
	t.Log("sender", time.Since(t0)); t0 = time.Now()
	_ = s
}
