fn main(){ let _ = tch::Tensor::zeros([2], (tch::Kind::Float, tch::Device::Cpu)); }
