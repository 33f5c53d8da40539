package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"moat/internal/classify"
	"moat/internal/config"
	"moat/internal/logfollow"
	"moat/internal/reputation"
	"moat/internal/traps"
)

// follow follows every log named in traps.follow (rejections of unknown
// recipients: trap evidence; and, with the kernel bypass on, logLine's
// evidence about the white hosts moat no longer sees) and reputation.follow (content filters'
// verdicts: feedback) with one follower per file, whose lines go to each
// parser the file was named for: a mail.log read for trap evidence and for
// Postfix's verdicts is read once, and its place in the store is kept
// once. They stop with ctx.
func follow(ctx context.Context, cfg *config.Config, eng *classify.Engine, m *traps.Miner, logLine func(string), log *slog.Logger) error {
	if cfg.BackendProxyProtocol == "none" && (len(cfg.Traps.Follow) > 0 || len(cfg.Reputation.Follow) > 0) {
		// Without a PROXY header the backend sees moat as every
		// client, and so do its filters: every line would be about
		// moat's own address.
		log.Warn("follow: backend_proxy_protocol is \"none\", so the backend's logs name moat, not the clients: traps.follow and reputation.follow are not read")
		return nil
	}
	var paths []string
	parsers := map[string][]func(string){}
	add := func(path string, fn func(string)) {
		if _, ok := parsers[path]; !ok {
			paths = append(paths, path)
		}
		parsers[path] = append(parsers[path], fn)
	}
	if cfg.Traps.Auto != traps.AutoOff && len(cfg.Traps.Follow) > 0 {
		lm, err := traps.NewLineMatcher(cfg.Traps.RejectPattern)
		if err != nil {
			return fmt.Errorf("config: traps.reject_pattern: %w", err)
		}
		for _, path := range cfg.Traps.Follow {
			add(path, func(line string) {
				if o, ok := lm.Match(line); ok {
					if err := m.Targeted(o.Client, o.Addr, traps.OriginLog); err != nil {
						log.Warn("traps: log evidence", "client", o.Client.String(), "err", err.Error())
					}
				}
			})
		}
	}
	if logLine != nil {
		for _, path := range cfg.Traps.Follow {
			add(path, logLine)
		}
	}
	for _, f := range cfg.Reputation.Follow {
		format := f.Format
		add(f.File, func(line string) {
			fb, ok := reputation.ParseLine(format, line)
			if !ok {
				return
			}
			res, err := eng.Feedback(fb)
			if err != nil {
				log.Warn("feedback", "client", fb.IP.String(), "verdict", string(fb.Verdict), "source", fb.Source, "err", err.Error())
				return
			}
			log.Info("feedback", "client", res.IP, "verdict", string(fb.Verdict), "source", fb.Source,
				"karma", res.Karma, "class", res.Class, "changed", res.Changed)
		})
	}
	for _, path := range paths {
		fns := parsers[path]
		f := &logfollow.Follower{Path: path, Store: eng.Store(), Log: log, Line: func(line string) {
			for _, fn := range fns {
				fn(line)
			}
		}}
		go f.Run(ctx)
	}
	return nil
}
