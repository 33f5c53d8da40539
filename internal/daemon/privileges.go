package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"moat/internal/config"
)

// dropPrivileges becomes cfg.User once every socket and file that needs
// root is open. Before, it gives the user what moat writes to later:
// data_dir, the store file, the admin socket and the bait key (so that a
// restart as the user, or under systemd with User=, finds them its own).
// The groups are the user's, supplementary ones included, so that
// membership of "adm" is enough to follow /var/log/mail.log.
//
// A moat already running as that user (systemd's User=) has nothing to
// drop. Any other user that is not root cannot become it: that is an
// error, since running as someone else than configured would surprise.
func dropPrivileges(cfg *config.Config, configPath string, log *slog.Logger) error {
	if cfg.User == "" {
		return nil
	}
	u, err := user.Lookup(cfg.User)
	if err != nil {
		return fmt.Errorf("config: user: %w (create it, e.g. adduser --system --group %s)", err, cfg.User)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	switch os.Geteuid() {
	case uid:
		return nil
	case 0:
	default:
		return fmt.Errorf("config: user: moat runs as uid %d and cannot become %s; start it as root, or as %s with user = %q", os.Geteuid(), cfg.User, cfg.User, "")
	}
	if cfg.Bypass.Mode == "nftables" {
		return fmt.Errorf("config: user: the kernel bypass (bypass.mode = \"nftables\") changes nftables for as long as moat runs, which needs CAP_NET_ADMIN: run moat as root with user = \"\", or under systemd as %s with AmbientCapabilities=CAP_NET_ADMIN", cfg.User)
	}
	gids := []int{gid}
	if ids, err := u.GroupIds(); err == nil {
		for _, s := range ids {
			if g, err := strconv.Atoi(s); err == nil && g != gid {
				gids = append(gids, g)
			}
		}
	}
	for _, p := range []string{cfg.DataDir, BoltPath(cfg), cfg.AdminSocket(), cfg.BaitKeyFile()} {
		if err := os.Lchown(p, uid, gid); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("config: user: giving %s to %s: %w", p, cfg.User, err)
		}
	}
	// Linux sets the credentials of every thread (Go 1.16 and later);
	// the order matters: the groups while still root, the user last.
	if err := syscall.Setgroups(gids); err != nil {
		return fmt.Errorf("config: user: setgroups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("config: user: setgid %d: %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("config: user: setuid %d: %w", uid, err)
	}
	// What a reload reads must be readable now: say so at once rather
	// than at the first certificate renewal.
	for _, p := range []string{configPath, cfg.TLS.Cert, cfg.TLS.Key} {
		if p == "" {
			continue
		}
		if f, err := os.Open(p); err != nil {
			log.Warn("user: a reload will not read this file", "user", cfg.User, "file", p, "err", err.Error())
		} else {
			f.Close()
		}
	}
	return nil
}

// currentUser names the user moat runs as, for the start-up line.
func currentUser() string {
	if u, err := user.LookupId(strconv.Itoa(os.Geteuid())); err == nil {
		return u.Username
	}
	return strconv.Itoa(os.Geteuid())
}
