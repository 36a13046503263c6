package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"portolan/internal/knock"
)

func init() { register(newKnockCmd) }

// KnockOptions are the inputs of `portolan knock`.
type KnockOptions struct {
	Host     string
	Sequence []knock.DoorPort // classic knocks, in order
	Gap      time.Duration    // between classic knocks

	SPA     bool   // --spa: one signed datagram instead of knocks
	Key     string // --key FILE
	Open    string // --open PORTS
	For     time.Duration
	AllowIP string // --allow-ip; empty: the address we send from
	SPAPort uint16
	Server  string // --server-key FILE: seal to this server key
}

func newKnockCmd(g *Globals) *cobra.Command {
	var opts KnockOptions
	cmd := &cobra.Command{
		Use:   "knock HOST PORT[/udp]... | knock --spa HOST --key FILE --open PORTS",
		Short: "Open a door of a knock daemon: a knock sequence or a signed SPA request",
		Long: `Knock on HOST's ports in order (a TCP SYN each, or one UDP datagram for
PORT/udp), as portolan knockd or knockd expect, or with --spa send one signed
single-packet authorization request asking to open --open for this host.

A classic sequence travels in clear: anyone who sees it can replay it. An SPA
request is signed (Ed25519, or HMAC-SHA256 with a shared secret), carries a
timestamp and a random nonce, and names the address to open for, so a copy
is worth nothing. The address is the one this host sends from unless
--allow-ip names another (a key marked nat on the server allows that). With
--server-key (the server's .pub from portolan knock keygen --server) the
request is also sealed: encrypted to the server, so no observer learns the
key, the address or the ports.

Nothing answers a knock: check the port afterwards. Exit codes: 0 sent,
1 failed to send, 2 bad arguments. See docs/knock.md.`,
		Example: `  portolan knock 198.18.0.2 7000 8000/udp 9000
  portolan knock --spa 198.18.0.2 --key client.key --open 22/tcp
  portolan knock --spa [fd00::2] --key client.key --open 22/tcp --for 5m
  portolan knock --spa 198.18.0.2 --key client.key --server-key knockd.key.pub --open 22/tcp
  portolan knock keygen -o client.key`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErr(errors.New("want HOST and knock ports, or --spa HOST"))
			}
			opts.Host = args[0]
			if opts.SPA {
				if len(args) != 1 {
					return usageErr(errors.New("--spa takes HOST only; name the ports with --open"))
				}
				if opts.Key == "" || opts.Open == "" {
					return usageErr(errors.New("--spa needs --key FILE and --open PORTS"))
				}
			} else {
				if len(args) < 2 {
					return usageErr(errors.New("want HOST and one or more PORT[/udp]"))
				}
				for _, f := range []string{"key", "open", "for", "allow-ip", "spa-port", "server-key"} {
					if cmd.Flags().Changed(f) {
						return usageErr(fmt.Errorf("--%s goes with --spa", f))
					}
				}
				seq, err := knock.ParseSequence(strings.Join(args[1:], ","))
				if err != nil {
					return usageErr(err)
				}
				opts.Sequence = seq
			}
			return runKnock(cmd.Context(), g, opts)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.SPA, "spa", false, "send one signed single-packet authorization request")
	f.StringVar(&opts.Key, "key", "", "SPA: the client key `FILE` (portolan knock keygen)")
	f.StringVar(&opts.Open, "open", "", "SPA: the ports to open (22/tcp, 80,443)")
	f.DurationVar(&opts.For, "for", 0, "SPA: how long (0: the door's time; the server may shorten it)")
	f.StringVar(&opts.AllowIP, "allow-ip", "", "SPA: open for this address instead of the one we send from (the key needs nat)")
	f.Uint16Var(&opts.SPAPort, "spa-port", knock.DefaultSPAPort, "SPA: the server's UDP port")
	f.StringVar(&opts.Server, "server-key", "", "SPA: seal the request to the server's public key `FILE` (keygen --server's .pub)")
	f.DurationVar(&opts.Gap, "gap", 20*time.Millisecond, "pause between knocks")
	cmd.AddCommand(newKnockKeygenCmd(g))
	return cmd
}

// resolveHost reads HOST: an address (brackets allowed) or a name.
func resolveHost(ctx context.Context, host string) (netip.Addr, error) {
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap(), nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", h)
	if err != nil || len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("resolve %s: %w", host, err)
	}
	return addrs[0].Unmap(), nil
}

func runKnock(ctx context.Context, g *Globals, opts KnockOptions) error {
	host, err := resolveHost(ctx, opts.Host)
	if err != nil {
		return err
	}
	if !opts.SPA {
		if err := knock.Knock(ctx, host, opts.Sequence, opts.Gap); err != nil {
			return err
		}
		if g.JSON {
			return writeJSON(g, map[string]any{"host": host.String(), "sequence": knock.FormatSequence(opts.Sequence)})
		}
		fmt.Fprintf(g.io.Out, "knocked %s: %s\n", host, knock.FormatSequence(opts.Sequence))
		return nil
	}
	text, err := os.ReadFile(opts.Key)
	if err != nil {
		return fmt.Errorf("read key: %w", err)
	}
	key, err := knock.ParseClientKey(opts.Key, text)
	if err != nil {
		return usageErr(err)
	}
	ports, err := knock.ParsePorts(opts.Open)
	if err != nil {
		return usageErr(fmt.Errorf("--open: %w", err))
	}
	if len(ports) > knock.MaxPorts {
		return usageErr(fmt.Errorf("--open: %d ports; at most %d", len(ports), knock.MaxPorts))
	}
	var allow netip.Addr
	if opts.AllowIP != "" {
		if allow, err = netip.ParseAddr(opts.AllowIP); err != nil {
			return usageErr(fmt.Errorf("--allow-ip: %w", err))
		}
	}
	c := &knock.SPA{Key: key}
	what := "SPA request"
	if opts.Server != "" {
		text, err := os.ReadFile(opts.Server)
		if err != nil {
			return fmt.Errorf("read server key: %w", err)
		}
		if c.Server, err = knock.ParseServerPublicKey(opts.Server, text); err != nil {
			return usageErr(err)
		}
		what = "sealed SPA request"
	}
	if _, err := c.Send(ctx, netip.AddrPortFrom(host, opts.SPAPort), allow, ports, opts.For); err != nil {
		return err
	}
	if g.JSON {
		return writeJSON(g, map[string]any{"server": host.String(), "spa-port": opts.SPAPort, "open": opts.Open, "allow_ip": opts.AllowIP, "for": opts.For.String(), "sealed": c.Server != nil})
	}
	fmt.Fprintf(g.io.Out, "sent %s to %s port %d/udp: open %s\n", what, host, opts.SPAPort, opts.Open)
	return nil
}

func newKnockKeygenCmd(g *Globals) *cobra.Command {
	var out, name string
	var hmac, server bool
	cmd := &cobra.Command{
		Use:   "keygen -o FILE",
		Short: "Make a client key: FILE (secret) and FILE.pub (a line for the server's authorized keys)",
		Long: `Make an Ed25519 key pair for SPA: FILE holds the private key (mode 0600),
FILE.pub the line to append to knockd's authorized-keys file. With --hmac, a
random HMAC-SHA256 secret instead: then FILE.pub holds the same secret and must
stay private too. With --server, the server's X25519 key that sealed requests
are encrypted to: FILE is knockd's server-key, FILE.pub goes to the clients
(knock --server-key). Existing files are never overwritten.`,
		Example: `  portolan knock keygen -o client.key
  portolan knock keygen -o phone.key --name phone --hmac
  portolan knock keygen -o /etc/portolan/knockd.key --server`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageErr(errors.New("want -o FILE"))
			}
			if name == "" {
				host, _ := os.Hostname()
				name = strings.ReplaceAll(host, " ", "-")
				if name == "" {
					name = "client"
				}
			}
			alg := knock.Ed25519.String()
			var err error
			switch {
			case server && hmac:
				return usageErr(errors.New("--server and --hmac: choose one"))
			case server:
				alg = "x25519"
				err = knock.WriteServerKeyPair(out, name)
			case hmac:
				alg = knock.HMAC.String()
				err = knock.WriteKeyPair(out, knock.HMAC, name)
			default:
				err = knock.WriteKeyPair(out, knock.Ed25519, name)
			}
			if err != nil {
				return err
			}
			if g.JSON {
				return writeJSON(g, map[string]any{"key": out, "public": out + ".pub", "alg": alg, "name": name})
			}
			fmt.Fprintf(g.io.Out, "wrote %s and %s (%s, name %s)\n", out, out+".pub", alg, name)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the key to `FILE` and FILE.pub")
	cmd.Flags().StringVar(&name, "name", "", "the key's name in logs (default: this host's name)")
	cmd.Flags().BoolVar(&hmac, "hmac", false, "an HMAC-SHA256 shared secret instead of an Ed25519 pair")
	cmd.Flags().BoolVar(&server, "server", false, "the server's X25519 key for sealed requests")
	return cmd
}
