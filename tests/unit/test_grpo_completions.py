"""GRPO's rewards see the think tags: TRL decodes completions with skip_special_tokens=True,
which deletes <think> and </think> when they are special tokens (as the reasoning stage adds
them), so the stage re-decodes `completion_ids` itself."""

from tinyreason import rewards
from tinyreason.train.grpo import _WithThinkTags, completion_texts


class Tok:
    """A tokenizer whose ids are the characters of the text; 0 is EOS, 1 is padding."""

    eos_token, pad_token = "<|im_end|>", "<pad>"

    def decode(self, ids, skip_special_tokens=False):
        out = "".join({0: self.eos_token, 1: self.pad_token}.get(i, chr(i)) for i in ids)
        for t in ("<think>", "</think>", self.eos_token, self.pad_token) if skip_special_tokens else ():
            out = out.replace(t, "")
        return out


def ids(text: str, tail=(0, 1, 1)) -> list[int]:
    return [ord(c) for c in text] + list(tail)


def test_completions_keep_their_think_tags_and_lose_eos_and_padding():
    tok = Tok()
    assert completion_texts(tok, [ids("<think>\n2 + 3 = 5\n</think>\nThe answer is 5.")], False) == [
        "<think>\n2 + 3 = 5\n</think>\nThe answer is 5."]
    assert completion_texts(tok, [ids("<think>x</think>7", tail=(0, ord("9")))], True) == [
        [{"role": "assistant", "content": "<think>x</think>7"}]]  # nothing after the end of turn counts


def test_think_format_scores_what_trl_would_have_stripped():
    tok = Tok()
    done = [ids("<think>\n2 + 3 = 5\n</think>\nThe answer is 5."), ids("The answer is 5.")]
    stripped = [tok.decode(i, skip_special_tokens=True) for i in done]  # what TRL hands the reward
    fmt = rewards.make_reward({"name": "think_format"})
    assert fmt(completions=stripped, completion_ids=done) == [0.0, 0.0]  # the bug: no block to see
    wrapped = _WithThinkTags(fmt, tok)
    assert wrapped.__name__ == fmt.__name__  # what TRL logs
    assert wrapped(completions=stripped, completion_ids=done) == [1.0, 0.0]
    correct = _WithThinkTags(rewards.make_reward({"name": "correctness"}), tok)
    assert correct(completions=stripped, completion_ids=done, answer=["5", "5"])[0] == 1.0
