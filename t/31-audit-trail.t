#!/usr/bin/perl

# Which requests the audit trail holds.  A request joins the trail in the
# first "welby on" location it reaches and never leaves it, whatever
# error_page or internal redirect follows; a request nginx refuses before
# any location's phases (a 413 of client_max_body_size, a server-level
# return) belongs to its server, which has a "welby on" location; one
# that reaches only "welby off" locations is not in it.  Each request of
# the trail has exactly one record and every response of it one
# X-Request-Id, the record's id (HSTS too over TLS), a "return" in a
# "welby on" location included; subrequests (auth_request, SSI) are part
# of their main request.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::XS ();
use Welby::Nginx qw(http http_req parse_response);

my $t = Welby::Nginx->new();
my $d = $t->testdir();

system('openssl', 'req', '-x509', '-newkey', 'ec',
    '-pkeyopt', 'ec_paramgen_curve:P-256', '-sha256', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost',
    '-keyout', "$d/server.key", '-out', "$d/server.crt") == 0
    or die "openssl req failed";

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_token off;    # tokens: t/10-token.t
    welby_audit_log %%TESTDIR%%/audit.log;

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        server_name gw;

        welby_tls off;
        client_max_body_size 1k;

        # the issue's configuration
        location /fhir/ {
            welby on;
            error_page 413 /errors/413.json;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /errors/ {
            welby off;
            internal;
            return 413 '{"resourceType":"OperationOutcome"}';
        }

        # 413 without error_page: nginx's page
        location /big/ {
            welby on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /ret/ {
            welby on;
            return 200 "ret\n";
        }

        location /ret-off/ {
            welby off;
            return 200 "ret\n";
        }

        # welby on first, then error_page to a welby off location
        location /on-ep/ {
            welby on;
            error_page 404 /plain-errors/404.txt;
            return 404;
        }

        location /plain-errors/ {
            welby off;
            return 404 "not found\n";
        }

        # welby off first, then error_page into a welby on location
        location /off-ep/ {
            welby off;
            error_page 404 = /fhir/from-off;
            return 404;
        }

        location /open/ {
            welby off;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        # subrequests
        location /ar/ {
            welby on;
            auth_request /auth-check;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /ar-off/ {
            welby off;
            auth_request /auth-check;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location = /auth-check {
            internal;
            welby on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /ssi/ {
            welby on;
            ssi on;
            root %%TESTDIR%%/html;
        }

        location /barrier/ {
            welby on;
            return 204;
        }
    }

    # the same over TLS, welby_tls required (the default) everywhere
    server {
        listen 127.0.0.1:%%PORT_8443%% ssl;
        server_name gw-tls;
        ssl_certificate %%TESTDIR%%/server.crt;
        ssl_certificate_key %%TESTDIR%%/server.key;

        client_max_body_size 1k;

        location /fhir/ {
            welby on;
            error_page 413 /errors/413.json;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /errors/ {
            welby off;
            internal;
            return 413 '{"resourceType":"OperationOutcome"}';
        }

        location /ret/ {
            welby on;
            return 200 "ret\n";
        }
    }

    # welby only in one location; a server-level return
    server {
        listen 127.0.0.1:%%PORT_8082%%;
        server_name gw2;

        welby_tls off;

        if ($request_method = TRACE) {
            return 405;
        }

        location /fhir/ {
            welby on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location / {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        location / {
            client_max_body_size 1m;
            js_content echo.echo;
        }
    }
}
EOF

$t->write_file('html/ssi/page.html',
    "a <!--# include virtual=\"/fhir/included\" --> b\n");

$t->run()->plan(51);

my $HEX32 = qr/^[0-9a-f]{32}\z/;
my $HSTS = 'max-age=31536000; includeSubDomains';
my $barrier = 0;

sub records {
    my @r;
    for my $line (split /\n/, $t->read_file('audit.log')) {
        push @r, eval { JSON::XS->new->decode($line) } // { bad => $line };
    }
    return @r;
}

# Sends a request (http_req options); returns the response and the
# records written for it: those that appeared, before a barrier request's
# own, sent afterwards.
sub req {
    my (%o) = @_;
    my $before = () = records();
    my $r = parse_response(http_req(%o));
    my $id = $r && $r->header('X-Request-Id');

    # a record of the response's id, when it has one, is waited for first
    $t->wait_for(sub { grep { ($_->{id} // '') eq $id } records() })
        if defined $id;

    my $mark = '/barrier/' . ++$barrier;
    http_req(uri => $mark);
    $t->wait_for(sub { grep { ($_->{http}{path} // '') eq $mark } records() });

    my @all = records();
    my @new = grep { ($_->{http}{path} // '') ne $mark } @all[$before .. $#all];
    return ($r, @new);
}

# one X-Request-Id, and exactly one record, with that id.  2 assertions.
sub one_record {
    my ($what, $r, @rec) = @_;
    my @ids = $r ? $r->header('X-Request-Id') : ();
    ok(@ids == 1 && $ids[0] =~ $HEX32, "$what: one X-Request-Id")
        or diag(explain \@ids);
    ok(@rec == 1 && ($rec[0]{id} // '') eq ($ids[0] // '-'),
        "$what: exactly one record, with the answered id")
        or diag(explain \@rec);
}

# no X-Request-Id and no record.  1 assertion.
sub no_record {
    my ($what, $r, @rec) = @_;
    ok($r && $r->header_count('X-Request-Id') == 0 && @rec == 0,
        "$what: no X-Request-Id, no record")
        or diag(explain [$r && $r->head, \@rec]);
}

my $body = 'x' x 5000;

###############################################################################
# nginx's 413 before the location's phases, then error_page to welby off

my ($r, @rec) = req(method => 'POST', uri => '/fhir/Patient', body => $body,
    headers => ['Content-Type: application/fhir+json']);
is($r && $r->status . ' ' . $r->body,
    '413 {"resourceType":"OperationOutcome"}',
    '413, error_page to a welby off location: its answer');
one_record('413, error_page to a welby off location', $r, @rec);
is(($rec[0] || {})->{http}{status}, 413,
    '413, error_page to a welby off location: the record says 413');

($r, @rec) = req(method => 'POST', uri => '/big/x', body => $body);
is($r && $r->status, 413, '413 without error_page: nginx\'s page');
one_record('413 without error_page', $r, @rec);

# the same over TLS: HSTS too

($r, @rec) = req(method => 'POST', uri => '/fhir/Patient', body => $body,
    port => $t->port(8443), ssl => 1);
is($r && $r->status, 413, 'TLS 413, error_page: 413');
one_record('TLS 413, error_page', $r, @rec);
is(join('|', $r ? $r->header('Strict-Transport-Security') : ()), $HSTS,
    'TLS 413, error_page: HSTS');

# a welby off location: nginx refused it before the location mattered

($r, @rec) = req(method => 'POST', uri => '/open/x', body => $body);
is($r && $r->status, 413, '413 in a welby off location: 413');
one_record('413 in a welby off location (before its phases: the server\'s)',
    $r, @rec);

# control: the same location, the phases reached

($r, @rec) = req(method => 'POST', uri => '/open/x', body => 'small');
is($r && $r->status, 200, 'welby off location, small body: proxied');
no_record('welby off location, small body', $r, @rec);

###############################################################################
# return

($r, @rec) = req(uri => '/ret/x');
is($r && $r->status . ' ' . $r->body, "200 ret\n",
    'return in a welby on location: its answer');
one_record('return in a welby on location', $r, @rec);
is(($rec[0] || {})->{outcome}, 'error',
    'return in a welby on location: the record\'s outcome is error (not '
    . 'checked)');

($r, @rec) = req(uri => '/ret/x', port => $t->port(8443), ssl => 1);
is(join('|', $r ? $r->header('Strict-Transport-Security') : ()), $HSTS,
    'return in a welby on location over TLS: HSTS');
one_record('return in a welby on location over TLS', $r, @rec);

($r, @rec) = req(uri => '/ret-off/x');
is($r && $r->status, 200, 'return in a welby off location: 200');
no_record('return in a welby off location', $r, @rec);

###############################################################################
# error_page across locations

($r, @rec) = req(uri => '/on-ep/x');
is($r && $r->status . ' ' . $r->body, "404 not found\n",
    'welby on, then error_page to welby off: the off location answers');
one_record('welby on, then error_page to welby off', $r, @rec);

($r, @rec) = req(uri => '/off-ep/x');
my $j = $r && $r->json;
is($r && $r->status . ' ' . ($j && $j->{uri} // ''), '200 /fhir/from-off',
    'welby off, then error_page into welby on: proxied by the on location');
one_record('welby off, then error_page into welby on (the pipeline ran)',
    $r, @rec);
is($j && $j->{headers}{'x-request-id'}, $r && $r->header('X-Request-Id'),
    'welby off, then error_page into welby on: the backend got the id');

###############################################################################
# subrequests are part of their main request

($r, @rec) = req(uri => '/ar/x');
is($r && $r->status, 200, 'auth_request: allowed by the subrequest');
one_record('auth_request from a welby on location', $r, @rec);

# nginx runs no access phase for a subrequest: one into a welby on
# location from a request whose steps never ran is refused
($r, @rec) = req(uri => '/ar-off/x');
is($r && $r->status, 403, 'auth_request from a welby off location into a '
    . 'welby on one: 403, the subrequest refused');
is(join(' ', map { $_->{reason} // '-' } @rec), 'subrequest_unchecked',
    'auth_request from a welby off location: one record, '
    . 'subrequest_unchecked');

($r, @rec) = req(uri => '/ssi/page.html');
like($r && $r->body // '', qr/^a .*"uri":"\/fhir\/included".* b$/s,
    'SSI: the include went through');
one_record('SSI include of a welby on location', $r, @rec);

###############################################################################
# a server with welby in one location

($r, @rec) = req(method => 'TRACE', uri => '/anything', port => $t->port(8082));
is($r && $r->status, 405, 'server-level return: 405');
one_record('server-level return, before any location', $r, @rec);

($r, @rec) = req(uri => '/fhir/x', port => $t->port(8082));
is($r && $r->status, 200, 'welby on location of that server: 200');
one_record('welby on location of that server', $r, @rec);

($r, @rec) = req(uri => '/other', port => $t->port(8082));
is($r && $r->status, 200, 'a location without welby there: 200');
no_record('a location without welby there', $r, @rec);

($r, @rec) = req(uri => '/other', port => $t->port(8082), host => 'a/b');
is($r && $r->status, 400, 'a bad Host to that server: 400');
one_record('a bad Host to that server (before any location)', $r, @rec);
