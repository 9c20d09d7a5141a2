// Package tokengate makes Caddy an OAuth 2.0 bearer-token gateway. Import it
// (or build with `xcaddy build --with github.com/tokengate/tokengate`) to
// register the bearer_auth directive, the admin API and the CLI commands.
package tokengate

import _ "github.com/tokengate/tokengate/caddymodule"
