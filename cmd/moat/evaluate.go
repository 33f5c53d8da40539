package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"moat/internal/sim"
)

// evaluateCmd is "moat evaluate": a traffic model, or a real mail log,
// played through the real decision engine on a simulated clock, for moat's
// defaults and the policies people would otherwise choose.
func evaluateCmd() *cobra.Command {
	var (
		model, svgDir string
		policies      []string
		logs          []string
		days          int
		seed          uint64
		asJSON        bool
	)
	cmd := &cobra.Command{
		Use:   "evaluate [--model FILE] [--policy NAME|FILE]... [--days N] [--seed S] [--log FILE...] [--json] [--svg DIR]",
		Short: "how much spam a policy stops and what it costs legitimate senders, on a traffic model or a Postfix log",
		Long: `evaluate plays a week of a traffic model (the built-in one, or --model FILE) through moat's
decision engine on a simulated clock, for each policy side by side: moat's defaults,
spamd-like, postgrey-like, none (no greylisting), or any moat configuration file. With --log it
replays Postfix mail logs (plain or .gz) instead, and says what moat would have done to that
traffic. docs/evaluate.md explains the model, its sources and the figures.`,
		RunE: func(c *cobra.Command, args []string) error {
			if len(logs) == 0 && len(args) > 0 {
				return fmt.Errorf("unexpected arguments %q: log files go after --log", args)
			}
			logs = append(logs, args...)
			m, err := sim.LoadModel(model)
			if err != nil {
				return err
			}
			if c.Flags().Changed("days") {
				if days < 1 || days > 365 {
					return fmt.Errorf("--days %d: want 1..365", days)
				}
				m.Days = days
			}
			if len(policies) == 0 {
				policies = sim.Builtins
				if len(logs) > 0 {
					policies = []string{"moat"}
				}
			}
			var pols []sim.Policy
			for _, name := range policies {
				p, err := sim.LoadPolicy(name)
				if err != nil {
					return err
				}
				pols = append(pols, p)
			}
			out := c.OutOrStdout()
			if len(logs) > 0 {
				if svgDir != "" {
					return errors.New("--svg draws the charts of a model run; with --log, use --json")
				}
				return evaluateLog(out, m, pols, logs, asJSON)
			}
			return evaluateModel(out, m, model, pols, seed, asJSON, svgDir)
		},
	}
	f := cmd.Flags()
	f.StringVar(&model, "model", "", "traffic model (TOML); default: the built-in one")
	f.StringArrayVar(&policies, "policy", nil, "a built-in policy ("+strings.Join(sim.Builtins, ", ")+") or a moat configuration file; repeat to compare")
	f.IntVar(&days, "days", 7, "days of traffic to simulate (overrides the model)")
	f.Uint64Var(&seed, "seed", 1, "seed of the traffic drawn from the model")
	f.StringArrayVar(&logs, "log", nil, "Postfix mail log to replay (plain or .gz); repeat, or list the files after it")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.StringVar(&svgDir, "svg", "", "write the charts as SVG files into this directory")
	return cmd
}

func evaluateModel(out io.Writer, m *sim.Model, modelPath string, pols []sim.Policy, seed uint64, asJSON bool, svgDir string) error {
	tr := sim.NewTrace(m, seed)
	bar := newProgress("evaluate", "messages", int64(len(tr.Messages)*len(pols)))
	res, err := sim.Run(tr, pols, sim.Options{Progress: func(done, _ int64) { bar.set(done) }})
	bar.done()
	if err != nil {
		return err
	}
	name := modelPath
	if name == "" {
		name = "default"
	}
	rep := sim.NewReport(name, tr, res)
	if svgDir != "" {
		files, err := rep.WriteSVG(svgDir)
		if err != nil {
			return fmt.Errorf("--svg: %w", err)
		}
		if !asJSON {
			defer fmt.Fprintf(out, "\ncharts: %s\n", strings.Join(files, " "))
		}
	}
	if asJSON {
		return rep.WriteJSON(out)
	}
	return rep.WriteTable(out)
}

func evaluateLog(out io.Writer, m *sim.Model, pols []sim.Policy, files []string, asJSON bool) error {
	ml, err := sim.ReadMaillog(files)
	if err != nil {
		return err
	}
	if len(ml.Sessions) == 0 {
		return fmt.Errorf("no Postfix smtpd or postscreen records in %s: is it a mail log?", strings.Join(files, ", "))
	}
	rep, err := ml.Replay(m, pols)
	if err != nil {
		return err
	}
	if asJSON {
		return rep.WriteJSON(out)
	}
	return rep.WriteTable(out)
}
