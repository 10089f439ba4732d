package main

import (
	"strings"
	"time"

	"github.com/miekg/dns"
)

// dnsQuery is the "dns SERVER NAME TYPE [tcp]" client action: one query,
// the answer's rcode, flags and records in Reply.
func dnsQuery(args []string) clientResult {
	if len(args) < 3 {
		return clientResult{Err: "usage: dns SERVER NAME TYPE [tcp]"}
	}
	c := &dns.Client{Timeout: 10 * time.Second, UDPSize: 512}
	if len(args) > 3 && args[3] == "tcp" {
		c.Net = "tcp"
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(args[1]), dns.StringToType[strings.ToUpper(args[2])])
	start := time.Now()
	r, _, err := c.Exchange(m, args[0])
	if err != nil {
		return clientResult{Err: err.Error()}
	}
	var b strings.Builder
	b.WriteString(dns.RcodeToString[r.Rcode])
	if r.Truncated {
		b.WriteString(" TC")
	}
	for _, rr := range r.Answer {
		b.WriteString("\n" + rr.String())
	}
	return clientResult{Reply: b.String(), Local: time.Since(start).String()}
}
