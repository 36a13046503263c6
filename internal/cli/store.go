package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"portolan/internal/output"
	"portolan/internal/store"
)

// DBFlags is the --db flag of every command that uses the scan store
// (scan, history, show). Bind it with addDBFlags, open the store with open.
type DBFlags struct {
	Path string // empty means $PORTOLAN_DB, else store.DefaultPath()
}

// dbEnv names the store when --db is not given: a fleet's machines export
// PORTOLAN_DB=postgres://... once and every command uses it.
const dbEnv = "PORTOLAN_DB"

func addDBFlags(cmd *cobra.Command, f *DBFlags) {
	cmd.Flags().StringVar(&f.Path, "db", "", "scan database: a SQLite `FILE` or a postgres:// URL (default $PORTOLAN_DB, else $XDG_DATA_HOME/portolan/portolan.db)")
	markFiles(cmd.Flags(), false, "db")
}

// errNoStore says the store file does not exist: nothing was ever stored.
var errNoStore = errors.New("no scans stored yet")

// path returns the store path the flags name.
func (f DBFlags) path() (string, error) {
	if f.Path != "" {
		return f.Path, nil
	}
	if p := os.Getenv(dbEnv); p != "" {
		return p, nil
	}
	return store.DefaultPath()
}

// open opens the store. With create false a missing file is an error
// wrapping errNoStore instead of a new database: commands that only read
// (history, show) leave no file behind.
func (f DBFlags) open(ctx context.Context, create bool) (*store.Store, error) {
	path, err := f.path()
	if err != nil {
		return nil, err
	}
	if !create && !store.IsURL(path) {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w in %s", errNoStore, path)
		}
	}
	ttl, err := leaseTTL()
	if err != nil {
		return nil, err
	}
	db, err := store.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	db.LeaseTTL = ttl
	return db, nil
}

// leaseTTL is $PORTOLAN_LEASE_TTL, zero when unset.
func leaseTTL() (time.Duration, error) {
	v := os.Getenv(leaseEnv)
	if v == "" {
		return 0, nil
	}
	ttl, err := time.ParseDuration(v)
	if err != nil || ttl < time.Second {
		return 0, usageErr(fmt.Errorf("%s=%s: want a duration of 1s or more, such as 30s", leaseEnv, v))
	}
	return ttl, nil
}

// leaseEnv sets how long a scan's lease lasts without a heartbeat
// (store.DefaultLeaseTTL): how soon --resume on another host may take over
// a shard whose host went silent.
const leaseEnv = "PORTOLAN_LEASE_TTL"

// openRef opens the store and reads the scan ref names: an id, or a named
// scan (NAME, NAME@RUN) with its shards merged. A missing store or scan is
// an ExitNotFound error; on success the caller closes the store.
func (f DBFlags) openRef(ctx context.Context, ref string) (*store.Store, store.ScanInfo, error) {
	db, err := f.open(ctx, false)
	if errors.Is(err, errNoStore) {
		return nil, store.ScanInfo{}, withCode(ExitNotFound, fmt.Errorf("scan %s: %w", ref, err))
	}
	if err != nil {
		return nil, store.ScanInfo{}, err
	}
	si, err := db.ResolveScan(ctx, ref)
	if err != nil {
		db.Close()
		if errors.Is(err, store.ErrNotFound) {
			err = withCode(ExitNotFound, fmt.Errorf("scan %s not found in %s (portolan history lists the scans)", ref, db.Path()))
		}
		return nil, store.ScanInfo{}, err
	}
	return db, si, nil
}

// scanRef checks a scan reference given as an argument: a positive id, or
// NAME[@RUN] of a named scan. id is 0 for a name.
func scanRef(arg string) (ref string, id int64, err error) {
	if id, err := strconv.ParseInt(arg, 10, 64); err == nil {
		if id <= 0 {
			return "", 0, usageErr(fmt.Errorf("scan id %q: want a positive number (portolan history lists them)", arg))
		}
		return arg, id, nil
	}
	if _, _, err := store.ParseRef(arg); err != nil {
		return "", 0, usageErr(fmt.Errorf("%w (want a scan id or a --scan-id name, NAME@RUN for an earlier run)", err))
	}
	return arg, 0, nil
}

// shardsText says which shards of a merged named scan are not done: those
// missing, those still running (and where), those interrupted; "" when all
// are done.
func shardsText(si store.ScanInfo) string {
	if len(si.Shards) == 0 {
		return ""
	}
	n := max(si.ShardCount, 1)
	shard := func(i int) string { return fmt.Sprintf("%d/%d", max(i, 1), n) }
	var parts []string
	if len(si.Missing) > 0 {
		var m []string
		for _, i := range si.Missing {
			m = append(m, shard(i))
		}
		parts = append(parts, "missing (never started) "+strings.Join(m, ", "))
	}
	var running, stopped []string
	done := 0
	for _, sh := range si.Shards {
		switch sh.Status {
		case store.Done:
			done++
		case store.Running:
			running = append(running, fmt.Sprintf("%s on %s (lease until %s)", shard(sh.ShardIndex), sh.Host, sh.LeaseUntil.UTC().Format("15:04:05")))
		default:
			stopped = append(stopped, fmt.Sprintf("%s %s at position %d", shard(sh.ShardIndex), sh.Status, sh.Checkpoint))
		}
	}
	if len(running) > 0 {
		parts = append(parts, "still running "+strings.Join(running, ", "))
	}
	if len(stopped) > 0 {
		parts = append(parts, strings.Join(stopped, ", ")+" (portolan scan --resume "+si.Name+" --shard I/N continues one)")
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("scan %s@%d: %d of %d shards done; %s", si.Name, si.Run, done, n, strings.Join(parts, "; "))
}

// scanMeta describes a stored scan for the renderers.
func scanMeta(si store.ScanInfo) output.ScanMeta {
	m := output.ScanMeta{
		ID: si.ID, Args: si.Command, Version: si.Version, Start: si.Started, End: si.Finished,
		ScanType: si.Prober, Ports: si.PortSet, Hosts: int(min(si.Hosts, 1<<31-1)),
	}
	// The scan's options hold -Pn: its hosts were all assumed up.
	var opts struct {
		NoHostDown    bool                  `json:"no_host_down"`
		ScanType      string                `json:"scan_type"` // recipes of version 1: "n" for -sn
		DiscoveryOnly bool                  `json:"discovery_only"`
		Names         map[netip.Addr]string `json:"names"`
	}
	if json.Unmarshal(si.Options, &opts) == nil {
		m.AssumeUp = opts.NoHostDown
		m.DiscoveryOnly = opts.DiscoveryOnly || strings.EqualFold(opts.ScanType, "n")
		m.Names = opts.Names
	}
	// An imported nmap -sV scan knows versions its banners do not say.
	m.ServiceVersion, _ = si.ServiceVersion() // a bad record: versions from banners, as before
	if len(si.Shards) > 0 {
		m.Error = shardsText(si)
		return m
	}
	switch si.Status {
	case store.Interrupted, store.Failed:
		m.Error = fmt.Sprintf("scan %s at position %d of %d; portolan scan --resume %d continues it", si.Status, si.Checkpoint, si.Space, si.ID)
	case store.Running:
		m.Error = fmt.Sprintf("scan still running, or its process died (last checkpoint at position %d of %d)", si.Checkpoint, si.Space)
	}
	return m
}

// outputFormat resolves --format, --json and -o FILE into one format for
// scan and show: --format or --json when given, else from the file's
// extension (.xml, .gnmap, .json, .jsonl, .ndjson, .csv), else table.
func outputFormat(g *Globals, format, file string) (output.ScanFormat, error) {
	if format == "" && !g.JSON {
		switch strings.ToLower(filepath.Ext(file)) {
		case ".xml":
			return output.FormatXML, nil
		case ".gnmap":
			return output.FormatGrepable, nil
		case ".json":
			return output.FormatJSON, nil
		case ".jsonl", ".ndjson":
			return output.FormatJSONL, nil
		case ".csv":
			return output.FormatCSV, nil
		}
	}
	f, err := scanFormat(g, format)
	if err != nil {
		return "", usageErr(err)
	}
	return f, nil
}
