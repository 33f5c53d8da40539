package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"moat/internal/admin"
)

// statusCmd is "moat status".
func statusCmd(cfgPath *string) *cobra.Command {
	op := operator{cfgPath: cfgPath}
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "counts per class, connections now, tarpit seconds held in total",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var st admin.Status
			if err := op.do("GET", "/v1/status", nil, &st); err != nil {
				return err
			}
			if asJSON {
				return printJSON(c.OutOrStdout(), st)
			}
			w := c.OutOrStdout()
			state := "not running (figures from the store)"
			if st.Running {
				state = "running"
			}
			if st.Mode == "observe" {
				state += ", observe mode: every session is passed on; nothing is deferred or dropped"
			}
			fmt.Fprintf(w, "moat: %s\n", state)
			fmt.Fprintf(w, "hosts: %d white, %d grey, %d black\n", st.Hosts["white"], st.Hosts["grey"], st.Hosts["black"])
			fmt.Fprintf(w, "connections now: %d (tarpit: %d held)\n", st.Connections, st.TarpitHeld)
			fmt.Fprintf(w, "tarpit: %.0f seconds held in total, %d black connections refused (tarpit full)\n", st.TarpitSeconds, st.TarpitRefused)
			fmt.Fprintf(w, "tarpit messages: %d dropped (told 250), %d deferred (4xx), %d refused (5xx)\n",
				st.Messages["dropped"], st.Messages["deferred"], st.Messages["refused"])
			fmt.Fprintf(w, "traps: %d addresses, %d hits\n", st.Traps, st.TrapHits)
			for _, t := range st.TopTraps {
				fmt.Fprintf(w, "  %8d  %s\n", t.Hits, t.Addr)
			}
			if len(st.Sessions) > 0 {
				fmt.Fprintf(w, "sessions since start: %s\n", joinCounts(st.Sessions))
			}
			if len(st.Would) > 0 {
				fmt.Fprintf(w, "observed sessions since start, by what enforce mode would have done: %s\n", joinCounts(st.Would))
			}
			if st.StoreDown != nil {
				fmt.Fprintf(w, "store: UNREACHABLE since %s: unknown hosts get 4xx, cached ones are served\n", fmtTime(*st.StoreDown))
			}
			if st.StoreErrors > 0 {
				fmt.Fprintf(w, "store errors: %d\n", st.StoreErrors)
			}
			if st.Bypass != nil {
				printBypass(w, *st.Bypass)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// printBypass writes the line "moat status" and "moat hosts list" give
// the kernel bypass.
func printBypass(w io.Writer, b admin.Bypass) {
	if b.Problem != "" {
		fmt.Fprintf(w, "kernel bypass: %s: PROBLEM: %s\n", b.Table, b.Problem)
		return
	}
	fmt.Fprintf(w, "kernel bypass: %s: %d white hosts (%d IPv4, %d IPv6), %d white networks in the kernel's sets\n",
		b.Table, b.Hosts4+b.Hosts6, b.Hosts4, b.Hosts6, b.Nets4+b.Nets6)
}

// joinCounts writes counts by name, "a 1, b 2", sorted by name.
func joinCounts(m map[string]int64) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}
