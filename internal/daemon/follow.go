package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"moat/internal/classify"
	"moat/internal/config"
	"moat/internal/reputation"
	"moat/internal/traps"
)

// follow starts a follower for every log named in traps.follow (rejections
// of unknown recipients: trap evidence) and reputation.follow (content
// filters' verdicts: feedback). They stop with ctx.
func follow(ctx context.Context, cfg *config.Config, eng *classify.Engine, m *traps.Miner, log *slog.Logger) error {
	if cfg.Traps.Auto != traps.AutoOff && len(cfg.Traps.Follow) > 0 {
		lm, err := traps.NewLineMatcher(cfg.Traps.RejectPattern)
		if err != nil {
			return fmt.Errorf("config: traps.reject_pattern: %w", err)
		}
		for _, path := range cfg.Traps.Follow {
			f := &traps.Follower{Path: path, Match: lm, Store: eng.Store(), Log: log, Observe: func(o traps.Observation) {
				m.Targeted(o.Client, o.Addr, traps.OriginLog)
			}}
			go f.Run(ctx)
		}
	}
	for _, f := range cfg.Reputation.Follow {
		fl := reputation.NewFollower(f.File, f.Format, func(fb reputation.Feedback) {
			res, err := eng.Feedback(fb)
			if err != nil {
				log.Warn("feedback", "client", fb.IP.String(), "verdict", string(fb.Verdict), "source", fb.Source, "err", err.Error())
				return
			}
			log.Info("feedback", "client", res.IP, "verdict", string(fb.Verdict), "source", fb.Source,
				"karma", res.Karma, "class", res.Class, "changed", res.Changed)
		})
		fl.Log = log
		go fl.Run(ctx)
	}
	return nil
}
