#!/usr/bin/perl

# After an internal redirect (error_page, try_files, a named location,
# X-Accel-Redirect) into a "welby on" location configured differently from
# the one whose steps ran, the steps run again there, from the first: a
# public location's error_page into a protected one does not reach it
# without a token (the case reported in issue 12), and the new location's
# decision and reason are the request's, in its one audit record.  The
# request body is read once, whichever location reads it first, and the
# bound of each location stands.  Into the same location the steps run
# again only under a FHIR base, where the new URI is another request.  Subrequests into a location with a FHIR
# base are covered only by the steps of that location itself.

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
    "a <!--# include virtual=\"/fhirb/Patient/p1\" --> b\n");
$t->write_file('html/page/plain.html',
    "a <!--# include virtual=\"/fhir/x\" --> b\n");

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

        welby on;
        add_header X-Decision $welby_decision always;

        # the issue's case: a public location, its 404 sent to a
        # protected one
        location /pub/ {
            welby_token off;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
            proxy_intercept_errors on;
            error_page 404 = /fhir/secret;
        }

        # the same into a location with a FHIR base
        location /pubb/ {
            welby_token off;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
            proxy_intercept_errors on;
            error_page 404 = /fhirb/Patient/p1;
        }

        # a token is required in these
        location /fhir/ {
            proxy_pass http://127.0.0.1:%%PORT_8082%%;
        }

        location /fhirb/ {
            welby_fhir_base /fhirb;
            proxy_pass http://127.0.0.1:%%PORT_8082%%;
        }

        location @fhir {
            proxy_pass http://127.0.0.1:%%PORT_8082%%;
        }

        # try_files into a named location that wants a token
        location /tf/ {
            welby_token off;
            root %%TESTDIR%%/html;
            try_files $uri @fhir;
        }

        # the backend answers with X-Accel-Redirect: /fhir/secret
        location /xa/ {
            welby_token off;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        # from a protected location into a public one
        location /priv/ {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
            proxy_intercept_errors on;
            error_page 404 = /open/page;
        }

        location /open/ {
            welby_token off;
            proxy_pass http://127.0.0.1:%%PORT_8082%%;
        }

        # a body read under one FHIR base, then under another
        location /tfw/ {
            welby_fhir_base /tfw;
            welby_token off;
            root %%TESTDIR%%/html;
            try_files $uri /fhirw/Observation;
        }

        location /fhirw/ {
            welby_fhir_base /fhirw;
            welby_token off;
            proxy_pass http://127.0.0.1:%%PORT_8082%%;
            add_header X-Body-Json "[$welby_body_json]" always;
        }

        # a body nobody read before the redirect
        location /rtw/ {
            welby_token off;
            return 404;
            error_page 404 = /fhirw/Observation;
        }

        # a body an earlier location sent on unbuffered is gone
        location /ubw/ {
            welby_token off;
            client_body_buffer_size 1k;
            proxy_request_buffering off;
            proxy_http_version 1.1;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
            proxy_intercept_errors on;
            error_page 404 = /fhirw/Observation;
        }

        # a body the first location proxied buffered is still whole
        location /bw/ {
            welby_token off;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
            proxy_intercept_errors on;
            error_page 404 = /fhirw/Observation;
        }

        # ... and into a location with a smaller bound
        location /tfs/ {
            welby_fhir_base /tfs;
            welby_token off;
            root %%TESTDIR%%/html;
            try_files $uri /tiny/Observation;
        }

        location /tiny/ {
            welby_fhir_base /tiny;
            welby_token off;
            welby_body_max_size 16;
            proxy_pass http://127.0.0.1:%%PORT_8082%%;
        }

        # error_page into the same location, under a FHIR base
        location /same/ {
            welby_fhir_base /same;
            welby_token off;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
            proxy_intercept_errors on;
            error_page 404 = /same/Patient/p2;
        }

        # ... and without one
        location /samenb/ {
            welby_token off;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
            proxy_intercept_errors on;
            error_page 404 = /samenb/y;
        }

        # SSI pages that include a location with a FHIR base, or without
        location /page/ {
            ssi on;
            root %%TESTDIR%%/html;
        }
    }

    # the first upstream: 404, or an X-Accel-Redirect
    server {
        listen 127.0.0.1:%%PORT_8081%%;

        location / {
            return 404;
        }

        location /xa/ {
            add_header X-Accel-Redirect /fhir/secret;
            return 200 "first upstream\n";
        }
    }

    # echo backend
    server {
        listen 127.0.0.1:%%PORT_8082%%;

        location / {
            js_content echo.echo;
        }
    }
}
EOF

$t->run()->plan(58);

sub tok {
    return jwt(key => $key, set => { @_ });
}

sub get {
    my ($uri, %o) = @_;
    my @h;
    push @h, "Authorization: Bearer $o{token}" if $o{token};
    push @h, 'Content-Type: application/fhir+json' if defined $o{body};
    return parse_response(http_req(uri => $uri, headers => \@h,
        method => $o{method} // 'GET',
        (defined $o{body} ? (body => $o{body}) : ())));
}

sub reason_of {
    my ($r) = @_;
    my $j = $r && $r->json;
    return ($r ? $r->status : 0) . ' '
        . ($j && eval { $j->{issue}[0]{details}{coding}[0]{code} } // '');
}

# the one audit record of a response, by its request id: where nginx
# lingers on the connection (a body it did not read whole) the record is
# written when nginx closes it, so it is waited for
sub audit {
    my ($r) = @_;
    my $id = $r && $r->header('X-Request-Id') // return {};
    my @a;
    $t->wait_for(sub {
        @a = grep { ($_->{id} // '') eq $id }
            map { eval { JSON::XS->new->decode($_) } // {} }
            split /\n/, $t->read_file('audit.log');
        return scalar @a;
    }, 5);
    return @a == 1 ? $a[0] : { count => scalar @a };
}

# how often a debug line of the pipeline was written for a request id
sub count_log {
    my ($re, $r) = @_;
    my $id = $r && $r->header('X-Request-Id') // return -1;
    return scalar grep { /$re/ && /\bid:\Q$id\E(?:\W|$)/ }
        split /\n/, $t->read_file('error.log');
}

sub record {
    my ($a) = @_;
    return join ' ', map { $_ // '-' } ($a->{count} // 1),
        $a->{http}{status}, $a->{outcome}, $a->{reason};
}

###############################################################################
# the issue's case: error_page from a public location into a protected one

my $r = get('/pub/x');
is(reason_of($r), '401 token_missing',
    'error_page from a public location into one that wants a token: 401 '
    . 'token_missing');
is(record(audit($r)), '1 401 deny token_missing',
    'error_page into a protected location: one audit record, the new '
    . 'location\'s decision and reason');
is(count_log(qr/welby: step:tls /, $r), 2,
    'error_page into a protected location: the steps ran again from the '
    . 'first (tls twice)');
is(count_log(qr/welby: step:token /, $r), 2,
    'error_page into a protected location: the token step ran in both');

$r = get('/pub/x', token => tok());
is(reason_of($r), '200 ', 'the same with a valid token: 200 (control)');
is($r && $r->json && $r->json->{uri}, '/fhir/secret',
    'the same with a valid token: the protected location answered');
is(record(audit($r)), '1 200 allow -',
    'the same with a valid token: one record, allow');

$r = get('/pub/x', token => 'not-a-token');
is(reason_of($r), '401 token_malformed',
    'error_page into a protected location with a broken token: the token '
    . 'is checked there');

$r = get('/pubb/x');
is(reason_of($r), '401 token_missing',
    'error_page into a location with a FHIR base: 401 token_missing');
is(record(audit($r)), '1 401 deny token_missing',
    'error_page into a location with a FHIR base: one record');

###############################################################################
# try_files, named locations, X-Accel-Redirect

$r = get('/tf/missing');
is(reason_of($r), '401 token_missing',
    'try_files into a named location that wants a token: 401');
is(record(audit($r)), '1 401 deny token_missing',
    'try_files into a named location: one record, deny');
$r = get('/tf/missing', token => tok());
is(reason_of($r), '200 ',
    'try_files into a named location with a valid token: 200 (control)');

$r = get('/xa/x');
is(reason_of($r), '401 token_missing',
    'X-Accel-Redirect into a location that wants a token: 401');
is(record(audit($r)), '1 401 deny token_missing',
    'X-Accel-Redirect into a protected location: one record');
$r = get('/xa/x', token => tok());
is($r && $r->status == 200 && $r->json && $r->json->{uri}, '/fhir/secret',
    'X-Accel-Redirect with a valid token: the protected location answered '
    . '(control)');

###############################################################################
# from a protected location into a public one: the new location decides

$r = get('/priv/x');
is(reason_of($r), '401 token_missing',
    'a protected location without a token: refused before any redirect');
$r = get('/priv/x', token => tok(sub => 'nurse-34'));
is(reason_of($r), '200 ',
    'from a protected location into a public one with a token: 200');
my $a = audit($r);
is(record($a), '1 200 allow -',
    'from a protected into a public location: one record, allow');
ok(!exists $a->{agent}{sub},
    'from a protected into a public location: the public location '
    . 'checked no token, so the record names no subject')
    or diag(explain $a);
is(ref($r && $r->json && $r->json->{headers}) eq 'HASH'
    && join(',', grep { /^x-welby-/ } keys %{ $r->json->{headers} }), '',
    'from a protected into a public location: the backend gets no '
    . 'identity header');

###############################################################################
# the body: read once, whichever location reads it first

my $body = '{"resourceType":"Observation","status":"final"}';

$r = get('/tfw/Observation', method => 'POST', body => $body);
is($r && $r->status, 200,
    'a body read under one FHIR base, redirected under another: 200');
is($r && $r->json && $r->json->{body}, $body,
    'a body read before a redirect: the backend gets it whole');
is($r && $r->json && $r->json->{method}, 'POST',
    'a body read before a redirect: try_files kept the method');
is($r && $r->header('X-Body-Json'), '[ok]',
    'a body read before a redirect: parsed, once, for the new location');
is(count_log(qr/welby: body read /, $r), 1,
    'a body read before a redirect: read from the client once');
is(count_log(qr/welby: step:body /, $r), 2,
    'a body read before a redirect: the body step ran in both locations');
is(record(audit($r)), '1 200 allow -',
    'a body read before a redirect: one record');

$r = get('/rtw/Observation', method => 'POST', body => $body);
is($r && $r->json && $r->json->{body}, $body,
    'a body nobody read before an error_page: read in the new location, '
    . 'the backend gets it whole');
is(count_log(qr/welby: body read /, $r), 1,
    'a body nobody read before an error_page: read once, there');

$r = get('/bw/Observation', method => 'POST', body => $body);
is($r && $r->json && $r->json->{body}, $body,
    'a body proxied buffered, then error_page under a FHIR base: the '
    . 'second backend gets it whole');
is($r && $r->header('X-Body-Json'), '[ok]',
    'a body proxied buffered, then error_page under a FHIR base: read '
    . 'back from what nginx kept, and parsed');

my $long = '{"resourceType":"Observation","note":"' . ('n' x 5000) . '"}';
$r = get('/ubw/Observation', method => 'POST', body => $long);
is(reason_of($r), '500 internal_error',
    'a body sent on unbuffered, then error_page under a FHIR base: not '
    . 'checked in part, 500 internal_error');
is(record(audit($r)), '1 500 deny internal_error',
    'a body sent on unbuffered: one record, internal_error');
like($t->read_file('error.log'),
    qr/\[warn\].*welby: the request body of id:\S+ was sent on/,
    'a body sent on unbuffered: a warning says why');

# a small body that came with the headers: nginx buffered it all the
# same, and it is whole
$r = get('/ubw/Observation', method => 'POST', body => $body);
is($r && $r->json && $r->json->{body}, $body,
    'a small body, proxy_request_buffering off, then error_page under a '
    . 'FHIR base: nginx kept it whole, the second backend gets it');
is($r && $r->header('X-Body-Json'), '[ok]',
    'a small body, proxy_request_buffering off, then error_page: parsed');

$r = get('/tfs/Observation', method => 'POST', body => $body);
is(reason_of($r), '413 body_too_large',
    'a body read under a larger bound, redirected under a smaller one: '
    . '413 body_too_large');
is(record(audit($r)), '1 413 deny body_too_large',
    'redirected under a smaller bound: one record, body_too_large');

$r = get('/tfs/Observation', method => 'POST', body => '{}');
is(reason_of($r), '200 ',
    'redirected under a smaller bound with a small body: 200 (control)');

###############################################################################
# the same location again: no second run

$r = get('/fhir/x', token => tok(sub => 'nurse-34'));
is(reason_of($r), '200 ', 'no redirect: 200');
is($r && $r->json && $r->json->{headers}{'x-welby-sub'}, 'nurse-34',
    'no redirect: the backend gets the identity headers (control)');
is(count_log(qr/welby: step:token /, $r), 1,
    'no redirect: the token step ran once');
is(count_log(qr/welby: pipeline run /, $r), 1,
    'no redirect: the pipeline ran once');

# a redirect into the same location: under a FHIR base the request is
# another one to classify; without one, the checks that ran hold

$r = get('/same/Patient/p1');
is(count_log(qr/welby: step:classify /, $r), 2,
    'error_page into the same location under a FHIR base: classified '
    . 'again');
is(record(audit($r)), '1 404 allow -',
    'error_page into the same location under a FHIR base: one record');

$r = get('/samenb/x');
is(count_log(qr/welby: step:classify /, $r), 1,
    'error_page into the same location without a FHIR base: the steps '
    . 'ran once');

###############################################################################
# subrequests into a location with a FHIR base: only its own steps count

$r = get('/page/page.html', token => tok());
is($r && $r->status, 200, 'an SSI page with a valid token: 200');
unlike($r ? $r->body : '', qr/"uri"/,
    'an SSI include into a location with a FHIR base, from another '
    . 'location: not answered by the backend');
like($r ? $r->body : '', qr/a .*b/s,
    'an SSI include into a location with a FHIR base: the page around it '
    . 'is sent');
is(audit($r)->{reason}, 'subrequest_unchecked',
    'an SSI include into a location with a FHIR base: the record says '
    . 'subrequest_unchecked');

$r = get('/page/plain.html', token => tok());
like($r ? $r->body : '', qr/"uri":"\/fhir\/x"/,
    'an SSI include into a location without a FHIR base, token checked: '
    . 'answered by the backend (control)');
is(record(audit($r)), '1 200 allow -',
    'an SSI include into a location without a FHIR base: allow');

###############################################################################
# the error log: each refusal above is a notice, nothing worse

my @errors = grep { /^\S+ \S+ \[(?:error|crit|alert|emerg)\]/ }
    split /\n/, $t->read_file('error.log');
is(scalar @errors, 0, 'no [error] or worse in the error log')
    or diag(join "\n", @errors[0 .. ($#errors < 4 ? $#errors : 4)]);

###############################################################################
# what the new location checks is its own: an expired token is refused
# there, and a location with a FHIR base answers a valid one

$r = get('/pub/x', token => tok(exp => time() - 100, iat => time() - 200));
is(reason_of($r), '401 token_expired',
    'error_page into a protected location with an expired token: 401 '
    . 'token_expired');
is(record(audit($r)), '1 401 deny token_expired',
    'error_page with an expired token: one record, token_expired');

$r = get('/pubb/x', token => tok());
is(reason_of($r), '200 ',
    'error_page into a location with a FHIR base, valid token: 200 '
    . '(control)');
is($r && $r->json && $r->json->{uri}, '/fhirb/Patient/p1',
    'error_page into a location with a FHIR base, valid token: that '
    . 'location answered');
