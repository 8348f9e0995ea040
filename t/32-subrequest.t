#!/usr/bin/perl

# Subrequests into protected locations.  nginx runs no access phase for a
# subrequest (SSI include, auth_request, mirror), so the module's steps
# never see one: a subrequest into a "welby on" location is let through
# only when the main request's steps ran, allowed it, and checked at least
# what that location asks for (a token where it wants one).  Each refusal
# is first shown to be about the subrequest: the same include from a
# request that presented a valid token goes through.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::XS ();
use Welby::Nginx qw(http_req parse_response);
use Welby::JWT qw(gen_key jwt write_jwks);

my $t = Welby::Nginx->new();
my $d = $t->testdir();

my $key = gen_key('ES256', kid => 'k1');
write_jwks("$d/keys.jwks", $key);

$t->write_file('html/page/page.html',
    "a <!--# include virtual=\"/fhir/Patient/p2\" --> b\n");
$t->write_file('html/pub/page.html',
    "a <!--# include virtual=\"/fhir/Patient/p2\" --> b\n");
$t->write_file('html/open/page.html',
    "a <!--# include virtual=\"/fhir/Patient/p2\" --> b\n");
$t->write_file('html/detect/page.html',
    "a <!--# include virtual=\"/watch/Patient/p2\" --> b\n");

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t
    welby_audit_log %%TESTDIR%%/audit.log;

    welby_issuer https://issuer.test keys=%%TESTDIR%%/keys.jwks
                 audience=https://fhir.test;

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        ssi on;
        ssi_types *;

        # a token is required here
        location /fhir/ {
            welby on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /watch/ {
            welby on;
            welby_mode detect;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        # a protected page (a token required) that includes another
        location /page/ {
            welby on;
            root %%TESTDIR%%/html;
        }

        # public pages that include a protected one
        location /pub/ {
            welby on;
            welby_token off;
            root %%TESTDIR%%/html;
        }

        location /open/ {
            welby off;
            root %%TESTDIR%%/html;
        }

        location /ret/ {
            welby on;
            welby_token off;
            return 200 'a <!--# include virtual="/fhir/Patient/p2" --> b';
        }

        location /detect/ {
            welby off;
            root %%TESTDIR%%/html;
        }

        location /ar-open/ {
            welby off;
            auth_request /fhir/check;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /ar-fhir/ {
            welby on;
            auth_request /fhir/check;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        location / { js_content echo.echo; }
    }
}
EOF

$t->run();

my $tok = jwt(key => $key, set => { iss => 'https://issuer.test',
    aud => 'https://fhir.test', sub => 'p1' });

sub get {
    my ($uri, @h) = @_;
    my $raw = http_req(uri => $uri, headers => [@h, 'X-Welby-Sub: admin']);
    return parse_response($raw);
}

sub records {
    return map { JSON::XS->new->decode($_) }
        split /\n/, $t->read_file('audit.log');
}

# the newest record of a path, once the log phase has written it (a
# page's X-Request-Id header is sent before its includes are made, so
# a request that joins the trail at an include has none)
my %seen;
sub record {
    my ($path) = @_;
    my $rec;
    $t->wait_for(sub {
        ($rec) = grep { ($_->{http}{path} // '') eq $path
            && !$seen{$_->{id}} } records();
    });
    $seen{$rec->{id}} = 1 if $rec;
    return $rec || {};
}

my $INCLUDED = qr/"uri":"\/fhir\/Patient\/p2"/;

# ---- SSI from a public page of a protected location ----------------------

my $r = get('/page/page.html', "Authorization: Bearer $tok");
like($r ? $r->body : '', $INCLUDED,
    'control: a page that checked a valid token includes /fhir/');
unlike($r ? $r->body : '', qr/x-welby-sub":"admin/,
    'control: and the include carries no client X-Welby-Sub');
is(record('/page/page.html')->{outcome} // '-', 'allow',
    'control: its record: allow');

$r = get('/pub/page.html');
unlike($r ? $r->body : '', $INCLUDED,
    'a public page (welby_token off) without a token: the include of '
    . '/fhir/ is refused, the backend never answers it');
is(record('/pub/page.html')->{reason} // '-', 'subrequest_unchecked',
    'and its record says subrequest_unchecked');

$r = get('/pub/page.html', "Authorization: Bearer $tok");
unlike($r ? $r->body : '', $INCLUDED,
    'a public page with a token it never checked: the include is refused');
record('/pub/page.html');

# ---- SSI from a welby off location ---------------------------------------

$r = get('/open/page.html', "Authorization: Bearer $tok");
unlike($r ? $r->body : '', $INCLUDED,
    'a welby off page: the include of /fhir/ is refused even with a token '
    . '(no step ever checked it)');
my $rec = record('/open/page.html');
is(($rec->{reason} // '-') . ' ' . ($rec->{outcome} // '-'),
    'subrequest_unchecked deny',
    'and the request gets a record: subrequest_unchecked, deny');

# ---- SSI from a "return" in a protected location (steps never ran) --------

$r = get('/ret/x', "Authorization: Bearer $tok");
unlike($r ? $r->body : '', $INCLUDED,
    'a return in a welby on location: its include of /fhir/ is refused');

# ---- detect mode: reported, not refused ---------------------------------

$r = get('/detect/page.html');
like($r ? $r->body : '', qr/"uri":"\/watch\/Patient\/p2"/,
    'detect mode: the include of an unchecked subrequest goes through');
is(record('/detect/page.html')->{reason} // '-', 'subrequest_unchecked',
    'detect mode: and is recorded as subrequest_unchecked');

# ---- auth_request --------------------------------------------------------

$r = get('/ar-open/x', "Authorization: Bearer $tok");
is($r && $r->status, 403,
    'auth_request from a welby off location into /fhir/: 403');

$r = get('/ar-fhir/x', "Authorization: Bearer $tok");
is($r && $r->status, 200,
    'control: auth_request from /fhir/ itself, with a valid token: 200');
record('/ar-fhir/x');

$r = get('/ar-fhir/x');
is($r && $r->status . ' ' . (record('/ar-fhir/x')->{reason} // '-'),
    '401 token_missing', 'and without a token the main request is refused '
    . 'first (token_missing), never the subrequest');

ok(grep({ /\[notice\].*welby: refused id:\w+ step:subrequest reason:subrequest_unchecked/ }
        split /\n/, $t->read_file('error.log')),
    'the refusal is logged at notice with its id and reason');

$t->done_testing();
