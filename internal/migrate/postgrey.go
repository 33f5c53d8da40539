package migrate

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"moat/internal/store"
)

// parsePostgrey reads the text db_dump prints of postgrey's Berkeley DB
// files (db_dump -p, or plain db_dump: hexadecimal). Each database is a
// header of NAME=value lines ending in HEADER=END, then one line per key
// and one per value, each starting with a space, then DATA=END. Which
// file it is shows in its keys:
//
//	postgrey.db          client_net/sender/recipient → first,last[,client_host]
//	postgrey_clients.db  client address → count,last
//
// Times are seconds since 1970. client_net is the client's network
// address (--ipv4cidr, --ipv6cidr) or, with --lookup-by-host, its address;
// sender and recipient are lower-cased, the sender with postgrey's own
// folding of VERP and extensions. A triplet whose last attempt came after
// its first passed postgrey's delay or was turned away again; moat's
// greylist decides which from its own min_retry. A client counted in
// postgrey_clients.db at least AWL times is auto-whitelisted. Keys hashed
// by --privacy cannot be read back: skipped.
func parsePostgrey(r io.Reader, opt Options, n *Counts, put sink) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLine)
	line := 0
	bad := func(format string, a ...any) error {
		return &lineError{"postgrey", line, fmt.Errorf(format, a...)}
	}
	var (
		inData, hexData, sections = false, false, 0
		key                       []byte
		keyLine                   int
	)
	for sc.Scan() {
		line++
		text := strings.TrimSuffix(sc.Text(), "\r")
		if !inData {
			name, val, ok := strings.Cut(text, "=")
			switch {
			case line == 1 && name != "VERSION":
				return bad("not db_dump output (no VERSION= line): run db_dump -p on postgrey.db or postgrey_clients.db")
			case !ok:
				return bad("%s: want a db_dump header line NAME=value", clip(text))
			case name == "format":
				switch val {
				case "print":
					hexData = false
				case "bytevalue":
					hexData = true
				default:
					return bad("format=%s: want print or bytevalue", clip(val))
				}
			case name == "HEADER" && val == "END":
				inData, key = true, nil
			}
			continue
		}
		if text == "DATA=END" {
			if key != nil {
				return bad("a key without its value (line %d) before DATA=END", keyLine)
			}
			inData, sections = false, sections+1
			continue
		}
		if !strings.HasPrefix(text, " ") {
			return bad("%s: a key or value line starts with a space", clip(text))
		}
		b, err := dumpBytes(text[1:], hexData)
		if err != nil {
			return bad("%v", err)
		}
		if key == nil {
			key, keyLine = b, line
			continue
		}
		e, err := postgreyEntry(string(key), string(b), opt, keyLine, n)
		key = nil
		if err != nil {
			return &lineError{"postgrey", keyLine, err}
		}
		if e == nil {
			continue
		}
		if err := put(*e); err != nil {
			return &lineError{"postgrey", keyLine, err}
		}
	}
	if err := sc.Err(); err != nil {
		return scanError("postgrey", line, err)
	}
	switch {
	case line == 0:
		return &lineError{"postgrey", 1, fmt.Errorf("empty file: want the output of db_dump -p")}
	case inData:
		return bad("the file ends without DATA=END: truncated?")
	case sections == 0:
		return bad("the file ends in its header: no data")
	}
	return nil
}

// dumpBytes decodes one key or value line of db_dump: in the printable
// format a byte that is not printable is \ and two hex digits, and \ is
// \\; in bytevalue format every byte is two hex digits.
func dumpBytes(s string, hexData bool) ([]byte, error) {
	if hexData {
		b, err := hex.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("%s: not hexadecimal (format=bytevalue)", clip(s))
		}
		return b, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b = append(b, c)
			continue
		}
		switch {
		case i+1 < len(s) && s[i+1] == '\\':
			b = append(b, '\\')
			i++
		case i+2 < len(s):
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return nil, fmt.Errorf("%s: a \\ not followed by \\ or two hex digits", clip(s))
			}
			b = append(b, byte(v))
			i += 2
		default:
			return nil, fmt.Errorf("%s: a \\ not followed by \\ or two hex digits", clip(s))
		}
	}
	return b, nil
}

// postgreyEntry reads one key and its value.
func postgreyEntry(key, val string, opt Options, line int, n *Counts) (*entry, error) {
	if len(key) == 40 && isHex(key) {
		n.skip(line, "a key hashed by postgrey --privacy cannot be read back: skipped")
		return nil, nil
	}
	// A triplet key: the client part ends at the first "/" (an address
	// has none), the recipient starts after the last (postgrey's
	// recipient is a local address), the sender is what lies between.
	if net, rest, ok := strings.Cut(key, "/"); ok {
		i := strings.LastIndexByte(rest, '/')
		if i < 0 {
			return nil, fmt.Errorf("key %s: want client/sender/recipient", clip(key))
		}
		client, err := netip.ParseAddr(net)
		if err != nil || client.Zone() != "" {
			return nil, fmt.Errorf("key %s: %s is not an address", clip(key), clip(net))
		}
		f := strings.Split(val, ",")
		if len(f) < 2 || len(f) > 3 {
			return nil, fmt.Errorf("value %s: want first,last[,client]", clip(val))
		}
		first, err := unixTime(f[0], "first seen")
		if err != nil {
			return nil, err
		}
		last, err := unixTime(f[1], "last seen")
		if err != nil {
			return nil, err
		}
		if first.IsZero() {
			return nil, fmt.Errorf("value %s: no first-seen time", clip(val))
		}
		sender, ok1 := address(rest[:i], true)
		rcpt, ok2 := address(rest[i+1:], false)
		if !ok1 || !ok2 || rcpt == "" {
			n.skip(line, "triplet of %s: sender %s or recipient %s is not an address: skipped", client, clip(rest[:i]), clip(rest[i+1:]))
			return nil, nil
		}
		count := uint32(1)
		if last.After(first) {
			count = 2
		}
		// No expiry: postgrey's own follows from its options, which the
		// file does not hold; moat's greylist gives its own.
		return &entry{attempt: &store.Attempt{First: first, Last: last, Count: count},
			client: client.Unmap(), sender: sender, rcpt: rcpt}, nil
	}
	client, err := netip.ParseAddr(key)
	if err != nil || client.Zone() != "" {
		return nil, fmt.Errorf("key %s: neither client/sender/recipient (postgrey.db) nor a client address (postgrey_clients.db)", clip(key))
	}
	cnt, lastf, ok := strings.Cut(val, ",")
	count, err := strconv.ParseUint(cnt, 10, 32)
	if !ok || err != nil {
		return nil, fmt.Errorf("value %s: want count,last", clip(val))
	}
	last, err := unixTime(lastf, "last seen")
	if err != nil {
		return nil, err
	}
	if count < uint64(opt.AWL) || last.IsZero() {
		n.skip(line, "client %s passed %d times, fewer than --postgrey-awl %d: not white", client, count, opt.AWL)
		return nil, nil
	}
	// No expiry: moat's white_ttl after it was last seen, as for a host
	// that passed moat's own greylist.
	return &entry{host: &store.Host{Prefix: store.HostPrefix(client.Unmap()), Class: store.White,
		Reason: fmt.Sprintf("imported from postgrey: auto-whitelisted client, %d passes", count), First: last, Last: last}}, nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}
