package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"moat/internal/classify"
	"moat/internal/reputation"
	"moat/internal/store"
)

// FeedbackRequest is the body of POST /v1/feedback: a content filter's
// verdict on a message from ip.
type FeedbackRequest struct {
	IP      string  `json:"ip"`
	Verdict string  `json:"verdict"` // "spam" or "ham"
	Score   float64 `json:"score"`   // the filter's score, recorded only
	Source  string  `json:"source"`  // who says so: "rspamd", "my-script", …
}

// HostHistory is what "moat hosts show IP" prints.
type HostHistory struct {
	IP      string           `json:"ip"`
	Class   string           `json:"class"`
	Reason  string           `json:"reason"`
	Entry   *HostView        `json:"entry,omitempty"` // the store's entry that decides (the host's own or its network's)
	Karma   *float64         `json:"karma,omitempty"`
	History []classify.Event `json:"history"`
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

// HostHistory returns a host's class, karma and evidence history.
func (s *Service) HostHistory(target string) (HostHistory, error) {
	p, err := ParseTarget(target)
	if err != nil {
		return HostHistory{}, badRequest{err}
	}
	out := HostHistory{IP: target, History: []classify.Event{}}
	if p.IsSingleIP() {
		addr := p.Addr()
		out.IP = addr.String()
		v, err := s.Eng.Classify(addr)
		if err != nil {
			return out, err
		}
		out.Class, out.Reason = v.Class.String(), v.Reason
		if h, ok, err := s.Eng.Store().Lookup(addr); err == nil && ok {
			hv := view(h)
			out.Entry = &hv
		}
		if k, ok, err := s.Eng.KarmaOf(addr); err == nil && ok {
			out.Karma = &k
		}
	} else {
		out.IP = p.String()
		out.Class, out.Reason = store.Grey.String(), "unknown"
		if h, ok, err := s.Eng.Store().Host(p); err == nil && ok {
			hv := view(h)
			out.Entry = &hv
			out.Class, out.Reason = h.Class.String(), h.Reason
		}
	}
	evs, err := s.Eng.History(p)
	if err != nil {
		return out, err
	}
	if evs != nil {
		out.History = evs
	}
	return out, nil
}

// feedbackRoutes adds the reputation endpoints to the API, served wherever
// the API is: the unix socket, and the token-guarded TCP listener when one
// is configured (tcp.go).
func (s *Service) feedbackRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/feedback", func(w http.ResponseWriter, r *http.Request) {
		var req FeedbackRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
			reply(w, nil, badRequest{err})
			return
		}
		res, err := s.Feedback(req)
		reply(w, res, err)
	})
	mux.HandleFunc("GET /v1/hosts/{ip...}", func(w http.ResponseWriter, r *http.Request) {
		ip := strings.TrimSuffix(r.PathValue("ip"), "/history")
		h, err := s.HostHistory(ip)
		reply(w, h, err)
	})
}
