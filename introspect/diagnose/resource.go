package diagnose

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/tokengate/tokengate/introspect"
	"github.com/tokengate/tokengate/introspect/internal/httpbody"
)

// The checks of a block with RFC 9728 resource metadata: what clients do
// with it, done once by the doctor. They run only for such a block, so the
// report of every other block is unchanged.
const (
	// CheckResourceMetadata: the metadata is valid and its resource is the
	// audience the block enforces.
	CheckResourceMetadata = "resource_metadata"
	// CheckResourceMetadataServed: the document is served at its URL, as
	// this block would serve it.
	CheckResourceMetadataServed = "resource_metadata_served"
	// CheckAuthorizationServers: every server the document names answers
	// discovery.
	CheckAuthorizationServers = "authorization_servers"
)

// maxMetadataBytes bounds the document the doctor reads.
const maxMetadataBytes = 1 << 20

func (d *doctor) checkResourceMetadata() {
	m := d.t.ResourceMetadata
	if m == nil {
		return
	}
	if d.skipAll != "" {
		for _, c := range []string{CheckResourceMetadata, CheckResourceMetadataServed, CheckAuthorizationServers} {
			d.skip(c, d.skipAll)
		}
		return
	}
	url := m.URL()
	data := map[string]any{"resource": m.Resource, "url": url, "authorization_servers": m.AuthorizationServers,
		"scopes_supported": m.ScopesSupported, "bearer_methods_supported": m.BearerMethodsSupported}
	if err := m.Check(d.cfg.Audience); err != nil {
		d.add(CheckResourceMetadata, StatusFail, err.Error(),
			"the resource is the audience the gateway enforces: clients ask for tokens for it (RFC 8707), so it must be one of audience", data)
		d.skip(CheckResourceMetadataServed, "skipped: the metadata is invalid")
		d.skip(CheckAuthorizationServers, "skipped: the metadata is invalid")
		return
	}
	d.add(CheckResourceMetadata, StatusPass, fmt.Sprintf("resource %s is the audience enforced; document at %s", m.Resource, url), "", data)
	d.checkMetadataServed(m, url)
	d.checkAuthorizationServers(m)
}

// checkMetadataServed fetches the document at its URL, as a client would
// after a 401, and compares it with the one this block serves. Not getting
// an answer at all is a warning (the gateway may not be running yet, or not
// be reachable from here); any other answer is what clients get.
func (d *doctor) checkMetadataServed(m *introspect.ResourceMetadata, url string) {
	data := map[string]any{"url": url}
	ctx, cancel := d.stepContext()
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		d.add(CheckResourceMetadataServed, StatusFail, err.Error(), "", data)
		return
	}
	req.Header.Set("Accept", "application/json")
	resp, err := introspect.NewHTTPClient(stepTimeout).Do(req)
	if err != nil {
		d.add(CheckResourceMetadataServed, StatusWarn, "could not fetch "+url+": "+err.Error(),
			"clients fetch this URL after a 401: start the gateway with this config, or check that it is reachable (DNS, TLS, firewall) from where clients run", data)
		return
	}
	defer resp.Body.Close()
	body, err := httpbody.Read(resp.Body, maxMetadataBytes)
	data["status"] = resp.StatusCode
	if errors.Is(err, httpbody.ErrTooLarge) {
		err = errors.New("longer than 1 MiB")
	}
	if err != nil {
		d.add(CheckResourceMetadataServed, StatusFail, fmt.Sprintf("reading %s: %v", url, err), "", data)
		return
	}
	// Most often the block has a matcher (bearer_auth /mcp* {...}) that
	// the well-known path does not pass, and the next handler answers.
	notReached := fmt.Sprintf("the request must reach this bearer_auth block: if the block has a matcher, make it match %s too; check that this host serves this config",
		strings.Join(m.Paths(), " and "))
	if resp.StatusCode != http.StatusOK {
		d.add(CheckResourceMetadataServed, StatusFail, fmt.Sprintf("GET %s: HTTP %d", url, resp.StatusCode), notReached, data)
		return
	}
	var got introspect.ResourceMetadata
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt != "application/json" || json.Unmarshal(body, &got) != nil {
		d.add(CheckResourceMetadataServed, StatusFail, fmt.Sprintf("GET %s: not a JSON document (%s)", url, resp.Header.Get("Content-Type")), notReached, data)
		return
	}
	if diff := metadataDiff(*m, got); len(diff) > 0 {
		data["differs"] = diff
		d.add(CheckResourceMetadataServed, StatusFail, url+" serves another document: "+strings.Join(diff, "; "),
			"another config (or an older one) answers there: reload the gateway with this config, or fix resource", data)
		return
	}
	d.add(CheckResourceMetadataServed, StatusPass, url+" serves this block's document", "", data)
}

// metadataDiff names the members in which got differs from want.
func metadataDiff(want, got introspect.ResourceMetadata) []string {
	var diff []string
	str := func(name, w, g string) {
		if w != g {
			diff = append(diff, fmt.Sprintf("%s %q (this block: %q)", name, g, w))
		}
	}
	list := func(name string, w, g []string) {
		if !slices.Equal(w, g) {
			diff = append(diff, fmt.Sprintf("%s [%s] (this block: [%s])", name, strings.Join(g, " "), strings.Join(w, " ")))
		}
	}
	str("resource", want.Resource, got.Resource)
	list("authorization_servers", want.AuthorizationServers, got.AuthorizationServers)
	list("scopes_supported", want.ScopesSupported, got.ScopesSupported)
	list("bearer_methods_supported", want.BearerMethodsSupported, got.BearerMethodsSupported)
	str("resource_name", want.ResourceName, got.ResourceName)
	str("resource_documentation", want.ResourceDocumentation, got.ResourceDocumentation)
	return diff
}

// checkAuthorizationServers discovers each listed server as a client would
// (introspect.Discover: RFC 8414, then OpenID Connect, the issuer checked).
// The block's own issuer, when New already discovered it, is not asked
// again.
func (d *doctor) checkAuthorizationServers(m *introspect.ResourceMetadata) {
	var ok, failed []string
	data := map[string]any{}
	for _, as := range m.AuthorizationServers {
		if d.v != nil && as == d.cfg.Issuer {
			if md := d.v.Metadata(); md != nil {
				ok = append(ok, as+" ("+md.Source+")")
				data[as] = md.Source
				continue
			}
		}
		ctx, cancel := d.stepContext()
		md, err := introspect.Discover(ctx, introspect.NewHTTPClient(stepTimeout), as)
		cancel()
		if err != nil {
			failed = append(failed, err.Error())
			data[as] = err.Error()
			continue
		}
		ok = append(ok, as+" ("+md.Source+")")
		data[as] = md.Source
	}
	if len(failed) > 0 {
		d.add(CheckAuthorizationServers, StatusFail, strings.Join(failed, "; "),
			"clients look each authorization server up before asking it for a token: list issuer identifiers of servers reachable from where clients run", data)
		return
	}
	detail := "discovery answers: " + strings.Join(ok, ", ")
	if iss := d.cfg.Issuer; iss != "" && !slices.Contains(m.AuthorizationServers, iss) {
		d.add(CheckAuthorizationServers, StatusWarn, detail+"; the issuer "+iss+" is not listed",
			"this block accepts tokens of issuer "+iss+" only: tokens clients get from the servers listed will be refused unless one of them is that issuer", data)
		return
	}
	d.add(CheckAuthorizationServers, StatusPass, detail, "", data)
}
