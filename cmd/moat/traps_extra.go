package main

// Traps that grow by themselves: the miner and its hooks, log followers and
// the bait page for "moat run", and the "traps mine|candidates|promote|
// decode|bait-snippet" commands.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"moat/internal/admin"
	"moat/internal/classify"
	"moat/internal/config"
	"moat/internal/relay"
	"moat/internal/store"
	"moat/internal/traps"
)

// setupBait makes minted bait addresses traps. The key is made when bait
// is configured; when it is not but a key exists (bait was on before),
// the key is still loaded, so addresses published then stay traps.
func setupBait(cfg *config.Config, ts *traps.Set) error {
	path := cfg.BaitKeyFile()
	if cfg.Bait.Domain == "" {
		if _, err := os.Stat(path); err != nil {
			return nil
		}
	}
	key, err := traps.LoadKey(path)
	if err != nil {
		return fmt.Errorf("config: bait.secret_file: %w", err)
	}
	b, err := traps.NewBait(key, cfg.Bait.Domain)
	if err != nil {
		return fmt.Errorf("config: bait.domain: %w", err)
	}
	ts.SetBait(b)
	return nil
}

// newMiner builds the trap miner. Its probe asks the backend through the
// same dialer as the hand-off.
func newMiner(cfg *config.Config, st store.Store, eng *classify.Engine, log *slog.Logger) (*traps.Miner, error) {
	dialer := &relay.Dialer{Addr: cfg.Backend, Proxy: cfg.BackendProxyProtocol}
	return traps.NewMiner(traps.MinerConfig{
		MinHosts: cfg.Traps.MinHosts,
		Auto:     cfg.Traps.Auto,
		Domains:  cfg.Traps.Domains,
		Probe:    &traps.Prober{Dialer: dialer, Hostname: cfg.Hostname, Timeout: 20 * time.Second},
		Log:      log,
		Harvested: func(h traps.Harvest, client netip.Addr) {
			if err := eng.Blacklist(h.IP, store.SourceBait, h.Reason()); err != nil {
				log.Warn("traps: blacklisting harvester", "ip", h.IP.String(), "err", err.Error())
				return
			}
			log.Info("traps: bait used in the tarpit", "addr", h.Addr, "harvester", h.IP.String(),
				"harvested", h.At, "sender", client.String())
		},
	}, st, eng.Traps())
}

// startTraps starts the miner's worker, the log followers and the bait
// page; they stop with ctx.
func startTraps(ctx context.Context, cfg *config.Config, st store.Store, ts *traps.Set, m *traps.Miner, log *slog.Logger) error {
	go m.Run(ctx)
	if cfg.Traps.Auto != traps.AutoOff && len(cfg.Traps.Follow) > 0 {
		lm, err := traps.NewLineMatcher(cfg.Traps.RejectPattern)
		if err != nil {
			return fmt.Errorf("config: traps.reject_pattern: %w", err)
		}
		for _, path := range cfg.Traps.Follow {
			f := &traps.Follower{Path: path, Match: lm, Store: st, Log: log, Observe: func(o traps.Observation) {
				m.Targeted(o.Client, o.Addr, traps.OriginLog)
			}}
			go f.Run(ctx)
		}
	}
	if cfg.Bait.Listen == "" {
		return nil
	}
	b := ts.Bait()
	if b == nil {
		return errors.New("bait: no key loaded")
	}
	ln, err := net.Listen("tcp", cfg.Bait.Listen)
	if err != nil {
		return fmt.Errorf("bait.listen %s: %w", cfg.Bait.Listen, err)
	}
	srv := &http.Server{
		Handler:           &traps.Page{Bait: b, Count: cfg.Bait.Count, TrustedProxies: cfg.Bait.TrustedProxies.Nets()},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       20 * time.Second,
		WriteTimeout:      20 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("bait: serve", "err", err.Error())
		}
	}()
	log.Info("bait page started", "listen", ln.Addr().String(), "domain", b.Domain())
	return nil
}

// withMiner gives a Service built without a daemon its miner.
func withMiner(cfgPath *string, s *admin.Service) error {
	if s.Miner != nil {
		return nil
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	m, err := newMiner(cfg, s.Eng.Store(), s.Eng, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	s.Miner = m
	return err
}

// addTrapsCommands adds the mining and bait commands to "moat traps".
func addTrapsCommands(cmd *cobra.Command, cfgPath *string) {
	op := operator{cfgPath}
	var asJSON bool
	cands := &cobra.Command{
		Use:   "candidates",
		Short: "list mined trap candidates: addresses many hosts asked for and the backend never accepted",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var cs []traps.Evidence
			err := op.do("GET", "/v1/traps/candidates", nil, &cs, func(s *admin.Service) (any, error) {
				if err := withMiner(cfgPath, s); err != nil {
					return nil, err
				}
				return s.Candidates()
			})
			if err != nil {
				return err
			}
			if cs == nil {
				cs = []traps.Evidence{}
			}
			if asJSON {
				return printJSON(c.OutOrStdout(), cs)
			}
			tw := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ADDRESS\tHOSTS\tSOURCES\tFIRST SEEN\tLAST SEEN\tLAST PROBE")
			for _, e := range cs {
				var src []string
				for _, o := range []traps.Origin{traps.OriginTarpit, traps.OriginBackend, traps.OriginLog} {
					if n := e.Sources[o]; n > 0 {
						src = append(src, fmt.Sprintf("%s:%d", o, n))
					}
				}
				probe := "-"
				if !e.Probed.IsZero() {
					probe = fmtTime(e.Probed) + " " + e.ProbeReply
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", e.Addr, len(e.Hosts), strings.Join(src, " "),
					fmtTime(e.First), fmtTime(e.Last), probe)
			}
			return tw.Flush()
		},
	}
	cands.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(cands)

	cmd.AddCommand(&cobra.Command{
		Use:   "promote ADDR",
		Short: "make a candidate a trap, after a probe shows the backend has no such mailbox",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var p traps.Promotion
			err := op.do("POST", "/v1/traps/promote", map[string]string{"addr": args[0]}, &p, func(s *admin.Service) (any, error) {
				if err := withMiner(cfgPath, s); err != nil {
					return nil, err
				}
				return s.Promote(context.Background(), args[0])
			})
			if err != nil {
				return err
			}
			if !p.Promoted {
				return fmt.Errorf("%s not promoted: %s", p.Addr, p.Reason)
			}
			fmt.Fprintf(c.OutOrStdout(), "trap %s added: %s\n", p.Addr, p.Reason)
			return nil
		},
	})

	cmd.AddCommand(&cobra.Command{
		Use:   "mine FILE...",
		Short: "read mail logs (plain or .gz) for \"User unknown\" rejections and record them as evidence",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cfg, err := config.Load(*cfgPath)
			if err != nil {
				return err
			}
			lm, err := traps.NewLineMatcher(cfg.Traps.RejectPattern)
			if err != nil {
				return fmt.Errorf("config: traps.reject_pattern: %w", err)
			}
			var obs []traps.Observation
			lines := 0
			for _, f := range args {
				n, err := traps.MineFile(f, lm, func(o traps.Observation) { obs = append(obs, o) })
				lines += n
				if err != nil {
					return err
				}
			}
			// One request per batch, and one even for no rejections,
			// to learn the number of candidates.
			var res admin.MineResult
			for i := 0; i == 0 || i < len(obs); i += 10000 {
				batch := obs[i:min(i+10000, len(obs))]
				var r admin.MineResult
				err := op.do("POST", "/v1/traps/mine", map[string]any{"observations": batch}, &r, func(s *admin.Service) (any, error) {
					if err := withMiner(cfgPath, s); err != nil {
						return nil, err
					}
					return s.Mine(batch)
				})
				if err != nil {
					return err
				}
				res.Observations += r.Observations
				res.Candidates = r.Candidates
			}
			fmt.Fprintf(c.OutOrStdout(), "%d lines read, %d rejections recorded, %d candidates now (see 'moat traps candidates')\n",
				lines, res.Observations, res.Candidates)
			return nil
		},
	})

	cmd.AddCommand(&cobra.Command{
		Use:   "decode ADDR",
		Short: "tell who harvested a bait address, and when",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cfg, err := config.Load(*cfgPath)
			if err != nil {
				return err
			}
			key, err := os.ReadFile(cfg.BaitKeyFile())
			if err != nil {
				return fmt.Errorf("bait key: %w (bait.secret_file)", err)
			}
			b, err := traps.NewBait(key, cfg.Bait.Domain)
			if err != nil {
				return err
			}
			h, err := b.Decode(args[0])
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			fmt.Fprintf(c.OutOrStdout(), "%s was harvested by %s at %s\n", h.Addr, h.IP, h.At.Local().Format(time.RFC3339))
			return nil
		},
	})

	var url string
	snip := &cobra.Command{
		Use:   "bait-snippet",
		Short: "print HTML to put in an existing site: a hidden link to the bait page",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if url == "" {
				cfg, err := config.Load(*cfgPath)
				if err != nil {
					return err
				}
				if cfg.Bait.Listen == "" {
					return errors.New("bait.listen is not set: give the public URL of the bait page with --url")
				}
				url = "http://" + cfg.Bait.Listen + "/"
			}
			fmt.Fprint(c.OutOrStdout(), traps.Snippet(url))
			return nil
		},
	}
	snip.Flags().StringVar(&url, "url", "", "public URL of the bait page (default: http://bait.listen/)")
	cmd.AddCommand(snip)
}
