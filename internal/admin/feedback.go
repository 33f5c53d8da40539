package admin

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"moat/internal/classify"
	"moat/internal/reputation"
)

// FeedbackRequest is the body of POST /v1/feedback: a content filter's
// verdict on a message from ip.
type FeedbackRequest struct {
	IP      string  `json:"ip"`
	Verdict string  `json:"verdict"` // "spam" or "ham"
	Score   float64 `json:"score"`   // the filter's score, recorded only
	Source  string  `json:"source"`  // who says so: "rspamd", "my-script", …
}

// Feedback applies a verdict.
func (s *Service) Feedback(req FeedbackRequest) (classify.FeedbackResult, error) {
	ip, err := netip.ParseAddr(strings.TrimSpace(req.IP))
	if err != nil {
		return classify.FeedbackResult{}, badRequest{fmt.Errorf("ip %q: not an IP address", req.IP)}
	}
	v, err := reputation.ParseVerdict(req.Verdict)
	if err != nil {
		return classify.FeedbackResult{}, badRequest{err}
	}
	src := strings.TrimSpace(req.Source)
	if src == "" {
		src = "unnamed"
	}
	if len(src) > 64 {
		src = src[:64]
	}
	return s.Eng.Feedback(reputation.Feedback{IP: ip, Verdict: v, Score: req.Score, Source: "api:" + src})
}

// feedbackRoutes serves content filters' verdicts wherever the API is
// served: the unix socket, and the token-guarded TCP listener a filter on
// another host reaches.
func (s *Service) feedbackRoutes(mux *http.ServeMux) {
	serveJSON(mux, "POST /v1/feedback", 64<<10, func(_ *http.Request, req FeedbackRequest) (any, error) {
		return s.Feedback(req)
	})
}
