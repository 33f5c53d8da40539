package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"moat/internal/admin"
	"moat/internal/ledger"
)

func hostsCmd(cfgPath *string) *cobra.Command {
	op := operator{cfgPath: cfgPath}
	cmd := &cobra.Command{Use: "hosts", Short: "list and change what moat remembers of client hosts"}
	cmd.AddCommand(hostsListCmd(op), hostsSetCmd(op, "white"), hostsSetCmd(op, "black"), hostsShowCmd(op), hostsForgetCmd(op))
	return cmd
}

// hostsListCmd is "moat hosts list".
func hostsListCmd(op operator) *cobra.Command {
	var class string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "list hosts: IP, class, reason, first and last seen, expiry, tarpit time and messages told",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			q := ""
			switch class {
			case "":
			case "white", "grey", "gray", "black":
				q = "?class=" + class
			default:
				return fmt.Errorf("--class %q: want white, grey or black", class)
			}
			var hs []admin.HostView
			if err := op.do("GET", "/v1/hosts"+q, nil, &hs); err != nil {
				return err
			}
			if hs == nil {
				hs = []admin.HostView{}
			}
			if asJSON {
				return printJSON(c.OutOrStdout(), hs)
			}
			tw := table(c.OutOrStdout())
			fmt.Fprintln(tw, "IP\tCLASS\tREASON\tFIRST SEEN\tLAST SEEN\tEXPIRES\tTARPIT\tMESSAGES TOLD")
			for _, h := range hs {
				held := "-"
				if h.Held > 0 {
					held = (time.Duration(h.Held) * time.Second).String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.IP, h.Class, h.Reason, fmtTime(h.FirstSeen), fmtTime(h.LastSeen), fmtExpiry(h.Expires), held,
					fmtTold(map[string]int64{"dropped": h.Dropped, "deferred": h.Deferred, "refused": h.Refused}))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			// The kernel's sets, when the bypass is on (status.go).
			var b admin.Bypass
			if op.do("GET", "/v1/bypass", nil, &b) == nil {
				printBypass(c.OutOrStdout(), b)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&class, "class", "", "only hosts of this class: white, grey or black")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// hostsSetCmd is "moat hosts white" or "moat hosts black", as class says.
func hostsSetCmd(op operator, class string) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   class + " IP|CIDR",
		Short: "make a host or network " + class + " until you change it",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if _, err := admin.ParseTarget(args[0]); err != nil {
				return err
			}
			var res struct{ Stored string }
			if err := op.do("POST", "/v1/hosts", map[string]any{"ip": args[0], "class": class, "force": force}, &res); err != nil {
				return err
			}
			// Say what was stored: 192.0.2.7/24 is 192.0.2.0/24.
			fmt.Fprintf(c.OutOrStdout(), "%s is %s\n", res.Stored, class)
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "allow a network wider than a /16 (IPv4) or a /32 (IPv6)")
	return cmd
}

// hostsShowCmd is "moat hosts show IP": a host's class, why, its karma
// and every piece of evidence that moved it.
func hostsShowCmd(op operator) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show IP|CIDR",
		Short: "show a host's class, karma, evidence history and what its messages were told in the tarpit",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if _, err := admin.ParseTarget(args[0]); err != nil {
				return err
			}
			var h admin.HostHistory
			if err := op.do("GET", "/v1/hosts/"+admin.Escape(args[0])+"/history", nil, &h); err != nil {
				return err
			}
			if asJSON {
				return printJSON(c.OutOrStdout(), h)
			}
			w := c.OutOrStdout()
			fmt.Fprintf(w, "%s is %s: %s\n", h.IP, h.Class, h.Reason)
			if h.Entry != nil && h.Entry.IP != h.IP {
				fmt.Fprintf(w, "by the entry for %s\n", h.Entry.IP)
			}
			if h.Entry != nil {
				fmt.Fprintf(w, "first seen %s, last seen %s, expires %s\n", fmtTime(h.Entry.FirstSeen), fmtTime(h.Entry.LastSeen), fmtExpiry(h.Entry.Expires))
			}
			if h.Karma != nil {
				fmt.Fprintf(w, "karma %.2f\n", *h.Karma)
			}
			if len(h.History) == 0 {
				fmt.Fprintln(w, "no evidence history")
			} else {
				fmt.Fprintln(w)
				tw := table(w)
				fmt.Fprintln(tw, "WHEN\tCLASS\tEVIDENCE")
				for _, e := range h.History {
					cl := e.Class
					if cl == "" {
						cl = "-"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", fmtTime(e.At), cl, e.Reason)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			if h.Told != nil {
				return printTold(w, h.Told)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// hostsForgetCmd is "moat hosts forget".
func hostsForgetCmd(op operator) *cobra.Command {
	return &cobra.Command{
		Use:   "forget IP|CIDR",
		Short: "forget a host or network: it is grey again",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if _, err := admin.ParseTarget(args[0]); err != nil {
				return err
			}
			if err := op.do("DELETE", "/v1/hosts/"+args[0], nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "%s forgotten\n", args[0])
			return nil
		},
	}
}

// fmtTold says how many messages were told what, "-" for none.
func fmtTold(n map[string]int64) string {
	var parts []string
	for _, k := range []string{"dropped", "deferred", "refused"} {
		if n[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n[k], k))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// toldWords is what the operator reads for what a message was told.
var toldWords = map[string]string{
	"dropped":  "250, dropped",
	"deferred": "4xx, deferred",
	"refused":  "5xx, refused",
}

// printTold lists a host's sessions in the tarpit, a message a line: what
// it was told and its envelope (the ledger cleaned every address).
func printTold(w io.Writer, r *ledger.Record) error {
	fmt.Fprintf(w, "\nin the tarpit: %s (the latest %d sessions below)\n\n",
		fmtTold(map[string]int64{"dropped": r.Dropped, "deferred": r.Deferred, "refused": r.Refused}), len(r.Sessions))
	tw := table(w)
	fmt.Fprintln(tw, "SESSION\tTOLD\tSENDER\tRECIPIENTS")
	for _, s := range r.Sessions {
		for i, m := range s.Messages {
			when := fmtTime(s.Start)
			if i > 0 {
				when = ""
			}
			rcpts := strings.Join(m.Rcpts, ", ")
			if m.More > 0 {
				rcpts += fmt.Sprintf(" (+%d more)", m.More)
			}
			sender := "<" + m.Sender + ">"
			if m.Before {
				sender += " (sent before the tarpit)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", when, toldWords[m.Told], sender, rcpts)
		}
		if s.More > 0 {
			fmt.Fprintf(tw, "\t(+%d more messages)\t\t\n", s.More)
		}
	}
	return tw.Flush()
}
