package scan

import (
	"strings"
	"testing"
)

var versionCases = []struct {
	service, banner string
	want            Version
}{
	{"ssh", "SSH-2.0-OpenSSH_9.6p1 Debian-3", Version{"OpenSSH", "9.6p1", "Debian-3"}},
	{"ssh", "SSH-2.0-dropbear_2022.83", Version{"dropbear", "2022.83", ""}},
	{"ssh", "SSH-1.99-Cisco-1.25", Version{"Cisco", "1.25", ""}},
	{"ssh", "SSH-2.0-", Version{}},
	{"http", "HTTP/1.1 200 OK; Server: nginx/1.24.0", Version{"nginx", "1.24.0", ""}},
	{"http", "HTTP/1.1 403 Forbidden; Server: Apache/2.4.57 (Debian)", Version{"Apache", "2.4.57", "(Debian)"}},
	{"https", "TLS 1.3 alpn=http/1.1 subject=O=Acme Co HTTP/1.1 200 OK; Server: tiny-tls/2.0", Version{"tiny-tls", "2.0", ""}},
	{"http", "HTTP/1.0 200 OK", Version{}},
	{"mysql", "mysql 8.0.36", Version{"MySQL", "8.0.36", ""}},
	{"mysql", "mysql 5.5.5-10.11.6-MariaDB-0+deb12u1", Version{"MariaDB", "10.11.6", ""}},
	{"memcached", "VERSION 1.6.21", Version{"memcached", "1.6.21", ""}},
	{"ftp", "220 ProFTPD Server ready.", Version{"ProFTPD", "", ""}},
	{"ftp", "220 (vsFTPd 3.0.3)", Version{"vsFTPd", "3.0.3", ""}},
	{"smtp", "220 mx.example.test ESMTP Postfix (Debian/GNU)", Version{"Postfix", "", ""}},
	{"smtp", "220 mail.example.test ESMTP Exim 4.96 Mon, 07 Dec 2026 13:00:00 +0000", Version{"Exim", "4.96", ""}},
	{"redis", "+PONG", Version{}},
	{"redis", "redis 7.0.15 standalone", Version{"Redis", "7.0.15", "standalone"}},
	{"redis", "-NOAUTH Authentication required.", Version{}},
	{"postgresql", `postgresql: TLS not offered; auth ok; FATAL 28000: role "portolan" does not exist`, Version{"PostgreSQL", "", ""}},
	{"postgresql", "postgresql: TLS not offered; auth ok; server_version 15.10 (Debian 15.10-0+deb12u1)", Version{"PostgreSQL", "15.10", ""}},
	{"ssl", "TLS 1.3 alpn=h2 subject=CN=x issuer=CN=ca expires=2031-01-02", Version{"", "", "TLS 1.3 alpn=h2 subject=CN=x issuer=CN=ca expires=2031-01-02"}},
	{"http", "HTTP/1.1 200 OK; Server: nginx/1.22.1; title: Welcome to nginx!", Version{"nginx", "1.22.1", ""}},
	{"", "", Version{}},
}

func TestParseVersion(t *testing.T) {
	for _, tc := range versionCases {
		if got := ParseVersion(tc.service, tc.banner); got != tc.want {
			t.Errorf("ParseVersion(%q, %q) = %+v; want %+v", tc.service, tc.banner, got, tc.want)
		}
	}
	if s := (Version{"OpenSSH", "9.6p1", "Debian-3"}).String(); s != "OpenSSH 9.6p1 Debian-3" {
		t.Errorf("String = %q", s)
	}
}

// FuzzParseVersion: no panic, and what comes out was in the banner.
func FuzzParseVersion(f *testing.F) {
	for _, tc := range versionCases {
		f.Add(tc.service, tc.banner)
	}
	f.Fuzz(func(t *testing.T, service, banner string) {
		v := ParseVersion(service, banner)
		named := map[string]bool{"MySQL": true, "MariaDB": true, "memcached": true, "Redis": true, "PostgreSQL": true} // named by the protocol, not the banner
		for _, part := range []string{v.Product, v.Version, v.Extra} {
			if !strings.Contains(banner, part) && !named[part] {
				t.Errorf("ParseVersion(%q, %q) = %+v: %q is not in the banner", service, banner, v, part)
			}
		}
	})
}
