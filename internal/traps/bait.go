package traps

// Bait addresses: every view of the bait page mints addresses no person will
// ever see, each of which names, under an HMAC, the address of the visitor
// and the time of the visit. This is Project Honey Pot's method: when mail
// arrives for a minted address, moat knows that the sender bought or ran a
// harvester, and which host harvested it and when.
//
// Nothing is stored per visit: the address itself carries everything, and
// only someone with the key can mint one that decodes. A bait address is
// therefore a trap for as long as the key stays the same.

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"moat/internal/smtp"
)

// BaitPrefix starts the local part of every minted address. It keeps the
// decoding work off every other recipient: only local parts that start
// with it are decoded at all.
const BaitPrefix = "b-"

const (
	baitVersion = 1
	baitMACLen  = 8 // bytes of HMAC-SHA256 kept: 2^64 guesses to forge one
	baitNonce   = 4 // random bytes, so two views in one minute differ
	keyLen      = 32
)

// A minted local part is BaitPrefix and the lower-case, unpadded base32 of
//
//	version (1) | unix minutes (4, big-endian) | nonce (4) | IP (4 or 16) | HMAC (8)
//
// 36 characters for an IPv4 visitor and 55 for IPv6, within the 64 that
// RFC 5321 allows a local part. Base32 because local parts are compared
// case-insensitively and base32 survives lower-casing.
var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// Errors of Decode.
var (
	ErrNotBait      = errors.New("not a bait address")
	ErrOtherDomain  = errors.New("not at the bait domain: only addresses at bait.domain are bait")
	ErrBadSignature = errors.New("bad signature: not minted with this key")
)

// Harvest is what a bait address tells: who fetched the page that showed
// it, and when.
type Harvest struct {
	Addr string     `json:"addr"`
	IP   netip.Addr `json:"ip"`
	At   time.Time  `json:"at"`
}

// Bait mints and decodes bait addresses. Its zero value is not usable;
// build it with NewBait.
type Bait struct {
	key    []byte
	domain string
}

// NewBait returns a Bait that mints addresses at domain with key.
func NewBait(key []byte, domain string) (*Bait, error) {
	if len(key) < 16 {
		return nil, fmt.Errorf("traps: bait key is %d bytes, want at least 16", len(key))
	}
	d := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(domain), "."))
	if d != "" {
		if _, err := smtp.Normalize("x@" + d); err != nil {
			return nil, fmt.Errorf("traps: bait domain %q: not a domain", domain)
		}
	}
	return &Bait{key: append([]byte(nil), key...), domain: d}, nil
}

// Domain is the domain minted addresses are at.
func (b *Bait) Domain() string { return b.domain }

// Mint returns a new address that names ip and at. Every call returns a
// different address (a random nonce), even for the same visitor and minute.
func (b *Bait) Mint(ip netip.Addr, at time.Time) string {
	ip = ip.Unmap()
	raw := make([]byte, 0, 1+4+baitNonce+16+baitMACLen)
	raw = append(raw, baitVersion)
	raw = binary.BigEndian.AppendUint32(raw, uint32(at.Unix()/60))
	var nonce [baitNonce]byte
	rand.Read(nonce[:])
	raw = append(raw, nonce[:]...)
	raw = append(raw, ip.AsSlice()...)
	raw = append(raw, b.mac(raw)...)
	return BaitPrefix + strings.ToLower(b32.EncodeToString(raw)) + "@" + b.domain
}

func (b *Bait) mac(msg []byte) []byte {
	m := hmac.New(sha256.New, b.key)
	m.Write(msg)
	return m.Sum(nil)[:baitMACLen]
}

// Decode tells who harvested addr (normalised or not) and when. It
// returns ErrNotBait for an address that does not have the form of a
// minted one, ErrOtherDomain for one that is not at the bait domain, and
// ErrBadSignature for one that has the form but was not minted with this
// key (a guess, or a key that changed).
//
// The domain is checked because the local part alone would make any
// domain's address bait: b-…@a-provider.example, sent through that
// provider's own server, would blacklist the provider. A Bait without a
// domain decodes nothing.
func (b *Bait) Decode(addr string) (Harvest, error) {
	n, err := smtp.Normalize(addr)
	if err != nil {
		return Harvest{}, ErrNotBait
	}
	local, domain, _ := strings.Cut(n, "@")
	raw, ok := baitShape(local)
	if !ok {
		return Harvest{}, ErrNotBait
	}
	if b.domain == "" || domain != b.domain {
		return Harvest{}, ErrOtherDomain
	}
	body, sum := raw[:len(raw)-baitMACLen], raw[len(raw)-baitMACLen:]
	if !hmac.Equal(sum, b.mac(body)) {
		return Harvest{}, ErrBadSignature
	}
	ipLen := len(body) - 1 - 4 - baitNonce
	ip, _ := netip.AddrFromSlice(body[1+4+baitNonce : 1+4+baitNonce+ipLen])
	minutes := binary.BigEndian.Uint32(body[1:5])
	return Harvest{Addr: n, IP: ip, At: time.Unix(int64(minutes)*60, 0).UTC()}, nil
}

// baitShape decodes a local part that has the form of a minted one
// (whatever its key), and returns its bytes.
func baitShape(local string) ([]byte, bool) {
	enc, ok := strings.CutPrefix(local, BaitPrefix)
	if !ok {
		return nil, false
	}
	raw, err := b32.DecodeString(strings.ToUpper(enc))
	if err != nil {
		return nil, false
	}
	switch len(raw) {
	case 1 + 4 + baitNonce + 4 + baitMACLen, 1 + 4 + baitNonce + 16 + baitMACLen:
	default:
		return nil, false
	}
	return raw, raw[0] == baitVersion
}

// IsBait says whether addr (normalised) is an address this key minted.
func (b *Bait) IsBait(addr string) bool {
	if !strings.HasPrefix(addr, BaitPrefix) {
		return false
	}
	_, err := b.Decode(addr)
	return err == nil
}

// LoadKey reads the bait key at path. When the file does not exist it
// creates it with fresh random bytes, readable by its owner only: anyone
// with the key can mint addresses that blacklist any host they name.
func LoadKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err == nil {
		if len(key) < 16 {
			return nil, fmt.Errorf("traps: bait key %s: %d bytes, want at least 16 (remove it to have a new one made)", path, len(key))
		}
		return key, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("traps: bait key: %w", err)
	}
	key = make([]byte, keyLen)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("traps: bait key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("traps: bait key: %w", err)
	}
	// O_EXCL: when two moats start at once on one data_dir, one key wins
	// and the other reads it.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return LoadKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("traps: bait key: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("traps: bait key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("traps: bait key %s: %w", path, err)
	}
	return key, nil
}

// Reason is the reason a harvester is blacklisted for.
func (h Harvest) Reason() string {
	return "harvested bait <" + h.Addr + "> at " + h.At.UTC().Format(time.RFC3339)
}
