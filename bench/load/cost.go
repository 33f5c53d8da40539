package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// costCmd plays a patient bot against the tarpit: from a black source it
// sends one message (EHLO, MAIL, RCPT, DATA with a body of -size bytes,
// QUIT), waits for every reply, and reports how long the session took and
// where the time went: the reply bytes it had to read, and the time its
// message took to go out. It is the tarpit's price per message, measured on
// a real socket; `moat evaluate` charges the same from the tarpit's words.
func costCmd(args []string) error {
	fs := newFlags("cost")
	addr := fs.String("addr", "", "moat's SMTP address")
	src := fs.String("src", "127.64.0.1", "a source address moat holds as black")
	size := fs.Int("size", 3000, "bytes of the message body")
	n := fs.Int("n", 1, "sessions, one after the other (the median is reported)")
	fs.Parse(args)
	if *addr == "" {
		return errors.New("-addr is required")
	}
	if err := checkLoopback(*addr); err != nil {
		return err
	}
	s, err := netip.ParseAddr(*src)
	if err != nil {
		return err
	}
	var totals []time.Duration
	for i := range *n {
		c, err := costSession(s, *addr, *size)
		if err != nil {
			return fmt.Errorf("session %d: %w", i+1, err)
		}
		fmt.Printf("session %d: %s in all; %d reply bytes, the body's %d bytes took %s to go out; the last reply %q\n",
			i+1, c.total.Round(time.Millisecond), c.replyBytes, *size, c.body.Round(time.Millisecond), c.last)
		totals = append(totals, c.total)
	}
	slices.Sort(totals)
	p50 := percentile(totals, 50)
	fmt.Printf("RESULT cost session_s=%.1f sessions=%d body_bytes=%d\n", p50.Seconds(), *n, *size)
	return nil
}

type sessionCost struct {
	total, body time.Duration
	replyBytes  int
	last        string
}

func costSession(src netip.Addr, addr string, size int) (sessionCost, error) {
	var sc sessionCost
	start := time.Now()
	c, err := dialFrom(src, addr, 10*time.Second)
	if err != nil {
		return sc, err
	}
	defer c.Close()
	c.SetDeadline(start.Add(2 * time.Hour))
	r := bufio.NewReader(c)
	reply := func() (string, error) {
		for {
			l, err := r.ReadString('\n')
			sc.replyBytes += len(l)
			if err != nil {
				return "", err
			}
			if len(l) < 4 || l[3] != '-' {
				return strings.TrimRight(l, "\r\n"), nil
			}
		}
	}
	say := func(line string) (string, error) {
		if _, err := io.WriteString(c, line+"\r\n"); err != nil {
			return "", err
		}
		return reply()
	}
	if _, err := reply(); err != nil {
		return sc, fmt.Errorf("banner: %w", err)
	}
	for _, cmd := range []string{"EHLO bot.example", "MAIL FROM:<offer@bot.example>", "RCPT TO:<victim@example.org>", "DATA"} {
		if sc.last, err = say(cmd); err != nil {
			return sc, fmt.Errorf("%s: %w", cmd, err)
		}
	}
	if !strings.HasPrefix(sc.last, "354") {
		return sc, fmt.Errorf("DATA: %q, want 354: is %s black?", sc.last, src)
	}
	body := spamBody(size)
	began := time.Now()
	if _, err := io.WriteString(c, body); err != nil {
		return sc, fmt.Errorf("body: %w", err)
	}
	sc.body = time.Since(began)
	if sc.last, err = reply(); err != nil {
		return sc, fmt.Errorf("end of data: %w", err)
	}
	if _, err := say("QUIT"); err != nil {
		return sc, fmt.Errorf("QUIT: %w", err)
	}
	sc.total = time.Since(start)
	return sc, nil
}

// spamBody is a message of about size bytes in 76-character lines, ended by
// the final dot.
func spamBody(size int) string {
	var b strings.Builder
	b.WriteString("Subject: an offer you cannot refuse\r\n\r\n")
	for b.Len() < size {
		b.WriteString(strings.Repeat("x", 76) + "\r\n")
	}
	b.WriteString(".\r\n")
	return b.String()
}
