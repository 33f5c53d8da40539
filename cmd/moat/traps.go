package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"moat/internal/admin"
	"moat/internal/config"
	"moat/internal/traps"
)

func trapsCmd(cfgPath *string) *cobra.Command {
	op := operator{cfgPath: cfgPath}
	mining := operator{cfgPath: cfgPath, mining: true}
	cmd := &cobra.Command{Use: "traps", Short: "list and change spamtrap addresses"}
	cmd.AddCommand(trapsListCmd(op), trapsAddCmd(op), trapsDelCmd(op),
		trapsCandidatesCmd(mining), trapsPromoteCmd(mining), trapsMineCmd(mining),
		trapsDecodeCmd(cfgPath), trapsBaitSnippetCmd(cfgPath))
	return cmd
}

// trapsListCmd is "moat traps list".
func trapsListCmd(op operator) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "list trap addresses with their hit counts",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var tl []traps.Trap
			if err := op.do("GET", "/v1/traps", nil, &tl); err != nil {
				return err
			}
			if tl == nil {
				tl = []traps.Trap{}
			}
			if asJSON {
				return printJSON(c.OutOrStdout(), tl)
			}
			tw := table(c.OutOrStdout())
			fmt.Fprintln(tw, "ADDRESS\tSOURCE\tHITS")
			for _, t := range tl {
				fmt.Fprintf(tw, "%s\t%s\t%d\n", t.Addr, t.Source, t.Hits)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// trapsAddCmd is "moat traps add".
func trapsAddCmd(op operator) *cobra.Command {
	return &cobra.Command{
		Use:   "add ADDR",
		Short: "add a trap address: any host that writes to it becomes black",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var out struct{ Added string }
			if err := op.do("POST", "/v1/traps", map[string]string{"addr": args[0]}, &out); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "trap %s added\n", out.Added)
			return nil
		},
	}
}

// trapsDelCmd is "moat traps del".
func trapsDelCmd(op operator) *cobra.Command {
	return &cobra.Command{
		Use:   "del ADDR",
		Short: "remove a trap address added with 'traps add'",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var out struct{ Deleted string }
			if err := op.do("DELETE", "/v1/traps/"+args[0], nil, &out); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "trap %s removed\n", out.Deleted)
			return nil
		},
	}
}

// trapsCandidatesCmd is "moat traps candidates".
func trapsCandidatesCmd(op operator) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "candidates",
		Short: "list mined trap candidates: addresses many hosts asked for and the backend never accepted",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var cs []traps.Evidence
			if err := op.do("GET", "/v1/traps/candidates", nil, &cs); err != nil {
				return err
			}
			if cs == nil {
				cs = []traps.Evidence{}
			}
			if asJSON {
				return printJSON(c.OutOrStdout(), cs)
			}
			tw := table(c.OutOrStdout())
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
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// trapsPromoteCmd is "moat traps promote".
func trapsPromoteCmd(op operator) *cobra.Command {
	return &cobra.Command{
		Use:   "promote ADDR",
		Short: "make a candidate a trap, after a probe shows the backend has no such mailbox",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var p traps.Promotion
			if err := op.do("POST", "/v1/traps/promote", map[string]string{"addr": args[0]}, &p); err != nil {
				return err
			}
			if !p.Promoted {
				return fmt.Errorf("%s not promoted: %s", p.Addr, p.Reason)
			}
			fmt.Fprintf(c.OutOrStdout(), "trap %s added: %s\n", p.Addr, p.Reason)
			return nil
		},
	}
}

// mineBatch is the most observations "traps mine" sends in one request.
const mineBatch = 10000

// trapsMineCmd is "moat traps mine".
func trapsMineCmd(op operator) *cobra.Command {
	return &cobra.Command{
		Use:   "mine FILE...",
		Short: "read mail logs (plain or .gz) for \"User unknown\" rejections and record them as evidence",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cfg, err := config.Load(*op.cfgPath)
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
			for i := 0; i == 0 || i < len(obs); i += mineBatch {
				batch := obs[i:min(i+mineBatch, len(obs))]
				var r admin.MineResult
				if err := op.do("POST", "/v1/traps/mine", map[string]any{"observations": batch}, &r); err != nil {
					return err
				}
				res.Observations += r.Observations
				res.Candidates = r.Candidates
			}
			fmt.Fprintf(c.OutOrStdout(), "%d lines read, %d rejections recorded, %d candidates now (see 'moat traps candidates')\n",
				lines, res.Observations, res.Candidates)
			return nil
		},
	}
}

// trapsDecodeCmd is "moat traps decode": it reads only the bait key.
func trapsDecodeCmd(cfgPath *string) *cobra.Command {
	return &cobra.Command{
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
	}
}

// trapsBaitSnippetCmd is "moat traps bait-snippet".
func trapsBaitSnippetCmd(cfgPath *string) *cobra.Command {
	var url string
	cmd := &cobra.Command{
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
	cmd.Flags().StringVar(&url, "url", "", "public URL of the bait page (default: http://bait.listen/)")
	return cmd
}
