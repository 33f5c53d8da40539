package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"moat/internal/admin"
)

// hostsShowCmd is "moat hosts show IP": a host's class, why, its karma
// and every piece of evidence that moved it.
func hostsShowCmd(op operator) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show IP|CIDR",
		Short: "show a host's class, karma and evidence history",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if _, err := admin.ParseTarget(args[0]); err != nil {
				return err
			}
			var h admin.HostHistory
			err := op.do("GET", "/v1/hosts/"+admin.Escape(args[0])+"/history", nil, &h,
				func(s *admin.Service) (any, error) { return s.HostHistory(args[0]) })
			if err != nil {
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
				exp := "never"
				if h.Entry.Expires != nil {
					exp = fmtTime(*h.Entry.Expires)
				}
				fmt.Fprintf(w, "first seen %s, last seen %s, expires %s\n", fmtTime(h.Entry.FirstSeen), fmtTime(h.Entry.LastSeen), exp)
			}
			if h.Karma != nil {
				fmt.Fprintf(w, "karma %.2f\n", *h.Karma)
			}
			if len(h.History) == 0 {
				fmt.Fprintln(w, "no evidence history")
				return nil
			}
			fmt.Fprintln(w)
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "WHEN\tCLASS\tEVIDENCE")
			for _, e := range h.History {
				cl := e.Class
				if cl == "" {
					cl = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", fmtTime(e.At), cl, e.Reason)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
