package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"portolan/internal/output"
	"portolan/internal/store"
)

// DBFlags is the --db flag of every command that uses the scan store
// (scan, history, show). Bind it with addDBFlags, open the store with open.
type DBFlags struct {
	Path string // empty means store.DefaultPath()
}

func addDBFlags(cmd *cobra.Command, f *DBFlags) {
	cmd.Flags().StringVar(&f.Path, "db", "", "scan database `FILE` (default $XDG_DATA_HOME/portolan/portolan.db)")
}

// errNoStore says the store file does not exist: nothing was ever stored.
var errNoStore = errors.New("no scans stored yet")

// path returns the store path the flags name.
func (f DBFlags) path() (string, error) {
	if f.Path != "" {
		return f.Path, nil
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
	if !create {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w in %s", errNoStore, path)
		}
	}
	return store.Open(ctx, path)
}

// openScan opens the store and reads scan id. A missing store or scan is
// an ExitNotFound error; on success the caller closes the store.
func (f DBFlags) openScan(ctx context.Context, id int64) (*store.Store, store.ScanInfo, error) {
	db, err := f.open(ctx, false)
	if errors.Is(err, errNoStore) {
		return nil, store.ScanInfo{}, withCode(ExitNotFound, fmt.Errorf("scan %d: %w", id, err))
	}
	if err != nil {
		return nil, store.ScanInfo{}, err
	}
	si, err := db.Scan(ctx, id)
	if err != nil {
		db.Close()
		if errors.Is(err, store.ErrNotFound) {
			err = withCode(ExitNotFound, fmt.Errorf("scan %d not found in %s (portolan history lists the scans)", id, db.Path()))
		}
		return nil, store.ScanInfo{}, err
	}
	return db, si, nil
}

// scanMeta describes a stored scan for the renderers.
func scanMeta(si store.ScanInfo) output.ScanMeta {
	m := output.ScanMeta{
		ID: si.ID, Args: si.Command, Version: si.Version, Start: si.Started, End: si.Finished,
		ScanType: si.Prober, Ports: si.PortSet, Hosts: int(min(si.Hosts, 1<<31-1)),
	}
	// The scan's options hold -Pn: its hosts were all assumed up.
	var opts struct {
		NoHostDown bool                  `json:"no_host_down"`
		ScanType   string                `json:"scan_type"`
		Names      map[netip.Addr]string `json:"names"`
	}
	if json.Unmarshal(si.Options, &opts) == nil {
		m.AssumeUp = opts.NoHostDown
		m.DiscoveryOnly = strings.EqualFold(opts.ScanType, "n")
		m.Names = opts.Names
	}
	// An imported nmap -sV scan knows versions its banners do not say.
	m.ServiceVersion, _ = si.ServiceVersion() // a bad record: versions from banners, as before
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
