#!/usr/bin/perl

# The alert rules (conf/prometheus/welby-alerts.yml): promtool check rules
# accepts them; promtool test rules runs welby-alerts.test.yml, in which
# every alert fires on one gateway and stays silent on another below its
# threshold and before its "for"; every rule has for, severity, summary
# and description; and every series and label value the rules name is
# one a running gateway's page has (a misspelt name would never fire).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CPAN::Meta::YAML;
use Welby::Nginx qw(http_req parse_response);
use Welby::Prom qw(prom_parse);

BAIL_OUT('promtool is missing: make test installs prometheus')
    unless -x '/usr/bin/promtool';

my $DIR = "$FindBin::Bin/../conf/prometheus";
my $RULES = "$DIR/welby-alerts.yml";
my $TESTS = "$DIR/welby-alerts.test.yml";

my $t = Welby::Nginx->new();

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;
    welby_zone keyed 64k;

    server {
        listen 127.0.0.1:%%PORT_8080%%;

        location / {
            welby on;
            welby_token off;
            return 204;
        }

        location = /metrics {
            welby_metrics;
        }
    }
}
EOF

$t->run()->plan(13);

sub yaml {
    my ($path) = @_;
    open my $fh, '<', $path or die "$path: $!\n";
    local $/;
    my $y = CPAN::Meta::YAML->read_string(<$fh>)
        or die "$path: " . CPAN::Meta::YAML->errstr . "\n";
    return $y->[0];
}

my $out = `promtool check rules $RULES 2>&1`;
is($? >> 8, 0, 'promtool check rules accepts the rules') or diag($out);
like($out, qr/SUCCESS: 14 rules found/, 'all 14 of them');

$out = `cd $DIR && promtool test rules welby-alerts.test.yml 2>&1`;
is($? >> 8, 0, 'promtool test rules: every case passes') or diag($out);

my @rules = map { @{ $_->{rules} } } @{ yaml($RULES)->{groups} };
my @alerts = grep { $_->{alert} } @rules;
is(scalar @alerts, scalar @rules, 'every rule is an alert');

my @bad = grep {
    !$_->{for} || $_->{for} !~ /^\d+[smh]$/
    || ($_->{labels}{severity} // '') !~ /^(?:warning|critical)$/
    || !$_->{annotations}{summary} || !$_->{annotations}{description}
} @alerts;
is(join(' ', map { $_->{alert} } @bad), '',
    'each has a for, a severity (warning or critical), a summary and a '
    . 'description');

# each alert is shown firing, and shown silent, in the rule tests

my (%fires, %silent);
for my $case (@{ yaml($TESTS)->{tests} }) {
    for my $a (@{ $case->{alert_rule_test} }) {
        my $exp = ref $a->{exp_alerts} ? $a->{exp_alerts} : [];
        if (@$exp) { $fires{ $a->{alertname} }++ }
        else { $silent{ $a->{alertname} }++ }
    }
}
is(join(' ', grep { !$fires{ $_->{alert} } } @alerts), '',
    'every alert fires in a test case');
is(join(' ', grep { !$silent{ $_->{alert} } } @alerts), '',
    'every alert is shown silent in a test case, before its for');

my $input = join "\n", map { $_->{series} } map { @{ $_->{input_series} } }
    @{ yaml($TESTS)->{tests} };
my %silent_instance = map { /instance="(gw[23])"/ ? ($1 => 1) : () }
    split /\n/, $input;
ok(scalar keys %silent_instance,
    'the cases have gateways below the thresholds (gw2, gw3)');

# the names the rules use, against a running gateway's page

http_req(uri => '/x') for 1 .. 2;

my $page;
$t->wait_for(sub {
    $page = prom_parse(parse_response(http_req(uri => '/metrics'))->body);
    return ($page->{families}{welby_request_duration_seconds}{samples}
        && grep { $_->{name} eq 'welby_request_duration_seconds_count'
                  && $_->{value} == 2 }
           @{ $page->{families}{welby_request_duration_seconds}{samples} });
});
is_deeply($page->{errors}, [], 'the page parses');

my %family = map { $_ => 1 } @{ $page->{order} };
my %used;
for my $a (@alerts) {
    (my $e = $a->{expr}) =~ s/"[^"]*"//g;     # names, not label values
    $used{$1}++ while $e =~ /\b(welby_[a-z_]+)/g;
}
is(join(' ', grep { !$family{$_} } sort keys %used), '',
    'every metric the rules name is a family of the page: '
    . join(' ', sort keys %used));

# label values: each one on the page of a gateway that served two
# requests, so at 0 before its first event: an alert on increase() sees
# that first event

my $reasons = do {
    local $/;
    open my $fh, '<', "$FindBin::Bin/../ngx_welby_module/welby_reason.h"
        or die $!;
    <$fh>;
};
my @codes = $reasons =~ /^\s+X\(\w+, "([a-z_0-9]+)"/mg;
my %code = map { $_ => 1 } @codes;
ok($code{internal_error} && $code{token_missing} && keys %code > 40,
    'the reason codes, read from welby_reason.h');

my %values;
for my $f (values %{ $page->{families} }) {
    for my $s (@{ $f->{samples} }) {
        $values{ "$s->{name} $_=$s->{labels}{$_}" } = 1
            for keys %{ $s->{labels} };
    }
}

my (@missing, $checked);
for my $a (@alerts) {
    my $e = $a->{expr};
    while ($e =~ /\b(welby_[a-z_]+)\{([^}]*)\}/g) {
        my ($name, $m) = ($1, $2);
        while ($m =~ /(\w+)(=~|!=|=)"([^"]*)"/g) {
            my ($label, $op, $v) = ($1, $2, $3);
            $checked++;
            if ($op eq '=~') {
                my $re = qr/^(?:$v)$/;
                push @missing, "$name $label=~$v"
                    unless grep { /^\Q$name $label=\E(.*)$/ && $1 =~ $re }
                        keys %values;
            } else {
                push @missing, "$name $label$op$v"
                    unless $values{"$name $label=$v"};
            }
        }
    }
}
is(join(', ', @missing), '',
    "every label value the rules match is on the page from the start "
    . "($checked)");

# welby_reason_is_auth(): client_cert_required .. token_binding, in the
# list's order, the audit category "authentication"
my ($from) = grep { $codes[$_] eq 'client_cert_required' } 0 .. $#codes;
my ($to) = grep { $codes[$_] eq 'token_binding' } 0 .. $#codes;
my ($auth) = map { $_->{expr} =~ /reason=~"([^"]+)"/ ? $1 : () }
    grep { $_->{alert} eq 'WelbyAuthenticationFailureSpike' } @alerts;
is(join(' ', grep { /^(?:$auth)$/ } @codes),
    join(' ', @codes[$from .. $to]),
    'the authentication failure rule matches exactly the authentication '
    . 'reasons (' . ($to - $from + 1) . ')');
